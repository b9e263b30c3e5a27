import CoreMetrics
import Synchronization

/// Counts one app instance's Redis round trips from the call path's own metrics (swift-metrics).
///
/// Every reservation attempt is one `EVALSHA` (`quotakeeper_ledger_reservations_total`, admitted or denied),
/// every admitted one is settled or released by one more, and every retry asks the fleet retry budget once
/// (`quotakeeper_retries_total` + `quotakeeper_retries_denied_total`). The orchestrator's per-mode number,
/// from the server's own counters, is exact; this per-app one misses only re-seeds after a lost budget.
final class RoundTripMetrics: MetricsFactory, Sendable {
    private let counts = Mutex<[String: Int64]>([:])

    /// The ledger's answers to this instance's reservation attempts, by `result` (`admitted`, `queued`, or the
    /// denial's reason): where the round trips of waiting go.
    var reservationAnswers: [String: Int] {
        counts.withLock { counts in
            Dictionary(uniqueKeysWithValues: counts.compactMap { key, value in
                key.hasPrefix("answer:") ? (String(key.dropFirst("answer:".count)), Int(value)) : nil
            })
        }
    }

    /// Redis round trips made so far.
    var roundTrips: Int {
        counts.withLock { counts in
            Int(counts["reservations", default: 0] + counts["answer:admitted", default: 0] + counts["retry_budget", default: 0])
        }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        var keys: [String] = []
        switch label {
        case "quotakeeper_ledger_reservations_total":
            keys = ["reservations"]
            if let result = dimensions.first(where: { $0.0 == "result" })?.1 { keys.append("answer:" + result) }
        case "quotakeeper_retries_total", "quotakeeper_retries_denied_total":
            keys = ["retry_budget"]
        default:
            break
        }
        return KeyedCounter(keys: keys, counts: self)
    }

    func add(_ amount: Int64, to keys: [String]) {
        guard !keys.isEmpty else { return }
        counts.withLock { counts in for key in keys { counts[key, default: 0] += amount } }
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        NOOPMetricsHandler.instance
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        NOOPMetricsHandler.instance
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { NOOPMetricsHandler.instance }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { NOOPMetricsHandler.instance }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    private final class KeyedCounter: CounterHandler, Sendable {
        let keys: [String]
        let counts: RoundTripMetrics
        init(keys: [String], counts: RoundTripMetrics) {
            self.keys = keys
            self.counts = counts
        }
        func increment(by amount: Int64) { counts.add(amount, to: keys) }
        func reset() {}
    }
}
