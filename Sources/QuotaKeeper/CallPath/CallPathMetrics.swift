import BedrockErrors
import Metrics
import Synchronization

/// The call path's metric objects (swift-metrics), each created once per label and dimensions and kept for
/// the coordinator's life instead of once per call. Labels and dimensions are listed in docs/call-path.md.
final class CallPathMetrics: Sendable {
    fileprivate struct Key: Hashable {
        var label: String
        var dimensions: [String]
    }

    private let counters = Mutex<[Key: Counter]>([:])
    private let timers = Mutex<[Key: Timer]>([:])
    private let gauges = Mutex<[Key: Gauge]>([:])

    init() {}

    /// `budget`: the serving target, or the route's first failed one ("none" when none was tried).
    func callFinished(budget: String, outcome: String) {
        counter("quotakeeper_calls_total", [("budget", budget), ("outcome", outcome)]).increment()
    }

    func callDuration(on target: BudgetID, _ duration: Duration) {
        timer("quotakeeper_call_duration_seconds", [("budget", target.description)]).recordDuration(duration)
    }

    func timeToFirstToken(on target: BudgetID, _ duration: Duration) {
        timer("quotakeeper_call_time_to_first_token_seconds", [("budget", target.description)]).recordDuration(duration)
    }

    func streamInterrupted(on target: BudgetID, kind: BedrockErrorKind) {
        counter("quotakeeper_stream_interruptions_total", [("budget", target.description), ("kind", kind.rawValue)]).increment()
    }

    func admissionWait(on target: BudgetID, _ duration: Duration) {
        timer("quotakeeper_admission_wait_seconds", [("budget", target.description)]).recordDuration(duration)
    }

    /// `limit`: a denial's reason (`rpm`, `breaker_open`, ...) or `local_share`.
    func denied(on target: BudgetID, limit: String) {
        counter("quotakeeper_call_denials_total", [("budget", target.description), ("limit", limit)]).increment()
    }

    func failOpenAdmission(on target: BudgetID) {
        counter("quotakeeper_fail_open_admissions_total", [("budget", target.description)]).increment()
    }

    func bedrockError(on target: BudgetID, kind: BedrockErrorKind) {
        counter("quotakeeper_bedrock_errors_total", [("budget", target.description), ("kind", kind.rawValue)]).increment()
        if kind == .tooManyConnections {
            counter("quotakeeper_too_many_connections_total", [("budget", target.description)]).increment()
        }
    }

    func retried(on target: BudgetID, kind: BedrockErrorKind) {
        counter("quotakeeper_retries_total", [("budget", target.description), ("kind", kind.rawValue)]).increment()
    }

    func retryDenied(on target: BudgetID) {
        counter("quotakeeper_retries_denied_total", [("budget", target.description)]).increment()
    }

    func fellOver(from target: BudgetID, to next: BudgetID) {
        counter("quotakeeper_fallbacks_total", [("from", target.description), ("to", next.description)]).increment()
    }

    func effectiveCeiling(of target: BudgetID, _ ceiling: Double) {
        gauge("quotakeeper_effective_ceiling", [("budget", target.description)]).record(ceiling)
    }

    // MARK: The objects, created on first use

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        counters.withLock { $0.cached(Key(label, dimensions)) { Counter(label: label, dimensions: dimensions) } }
    }

    private func timer(_ label: String, _ dimensions: [(String, String)]) -> Timer {
        timers.withLock { $0.cached(Key(label, dimensions)) { Timer(label: label, dimensions: dimensions) } }
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge {
        gauges.withLock { $0.cached(Key(label, dimensions)) { Gauge(label: label, dimensions: dimensions) } }
    }
}

extension CallPathMetrics.Key {
    fileprivate init(_ label: String, _ dimensions: [(String, String)]) {
        self.init(label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
    }
}

extension Dictionary {
    fileprivate mutating func cached(_ key: Key, _ make: () -> Value) -> Value {
        if let value = self[key] { return value }
        let value = make()
        self[key] = value
        return value
    }
}

extension Timer {
    /// Records a `Duration` (nanosecond resolution).
    func recordDuration(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
