import BedrockErrors
import Metrics
import Synchronization

/// The call path's metric objects (swift-metrics), each created once per label and dimensions and kept for
/// the coordinator's life instead of once per call. Labels and dimensions are listed in docs/call-path.md;
/// each is spelled out where its object is made (`Counter(label: ..., dimensions: [...])`), which is what
/// OperationsAssetsTests reads to check the dashboards and docs against the library.
final class CallPathMetrics: Sendable {
    private struct Key: Hashable {
        /// The recording method: one metric label each.
        var metric: String
        var values: [String]
    }

    private let counters = Mutex<[Key: Counter]>([:])
    private let timers = Mutex<[Key: Timer]>([:])
    private let gauges = Mutex<[Key: Gauge]>([:])

    init() {}

    /// `budget`: the serving target, or the route's first failed one ("none" when none was tried).
    func callFinished(budget: String, outcome: String) {
        counter([budget, outcome]) { Counter(label: "quotakeeper_calls_total", dimensions: [("budget", budget), ("outcome", outcome)]) }.increment()
    }

    func callDuration(on target: BudgetID, _ duration: Duration) {
        let budget = target.description
        timer([budget]) { Timer(label: "quotakeeper_call_duration_seconds", dimensions: [("budget", budget)]) }.recordDuration(duration)
    }

    func timeToFirstToken(on target: BudgetID, _ duration: Duration) {
        let budget = target.description
        timer([budget]) { Timer(label: "quotakeeper_call_time_to_first_token_seconds", dimensions: [("budget", budget)]) }.recordDuration(duration)
    }

    func streamInterrupted(on target: BudgetID, kind: BedrockErrorKind) {
        let (budget, kind) = (target.description, kind.rawValue)
        counter([budget, kind]) { Counter(label: "quotakeeper_stream_interruptions_total", dimensions: [("budget", budget), ("kind", kind)]) }.increment()
    }

    func admissionWait(on target: BudgetID, _ duration: Duration) {
        let budget = target.description
        timer([budget]) { Timer(label: "quotakeeper_admission_wait_seconds", dimensions: [("budget", budget)]) }.recordDuration(duration)
    }

    /// `limit`: a denial's reason (`rpm`, `breaker_open`, ...) or `local_share`.
    func denied(on target: BudgetID, limit: String) {
        let budget = target.description
        counter([budget, limit]) { Counter(label: "quotakeeper_call_denials_total", dimensions: [("budget", budget), ("limit", limit)]) }.increment()
    }

    func failOpenAdmission(on target: BudgetID) {
        let budget = target.description
        counter([budget]) { Counter(label: "quotakeeper_fail_open_admissions_total", dimensions: [("budget", budget)]) }.increment()
    }

    func bedrockError(on target: BudgetID, kind: BedrockErrorKind) {
        let (budget, kindName) = (target.description, kind.rawValue)
        counter([budget, kindName]) { Counter(label: "quotakeeper_bedrock_errors_total", dimensions: [("budget", budget), ("kind", kindName)]) }.increment()
        if kind == .tooManyConnections { tooManyConnections(on: target) }
    }

    private func tooManyConnections(on target: BudgetID) {
        let budget = target.description
        counter([budget]) { Counter(label: "quotakeeper_too_many_connections_total", dimensions: [("budget", budget)]) }.increment()
    }

    func retried(on target: BudgetID, kind: BedrockErrorKind) {
        let (budget, kind) = (target.description, kind.rawValue)
        counter([budget, kind]) { Counter(label: "quotakeeper_retries_total", dimensions: [("budget", budget), ("kind", kind)]) }.increment()
    }

    func retryDenied(on target: BudgetID) {
        let budget = target.description
        counter([budget]) { Counter(label: "quotakeeper_retries_denied_total", dimensions: [("budget", budget)]) }.increment()
    }

    func fellOver(from target: BudgetID, to next: BudgetID) {
        let (from, to) = (target.description, next.description)
        counter([from, to]) { Counter(label: "quotakeeper_fallbacks_total", dimensions: [("from", from), ("to", to)]) }.increment()
    }

    func effectiveCeiling(of target: BudgetID, _ ceiling: Double) {
        let budget = target.description
        gauge([budget]) { Gauge(label: "quotakeeper_effective_ceiling", dimensions: [("budget", budget)]) }.record(ceiling)
    }

    // MARK: The objects, created on first use; keyed by the recording method and the dimension values

    private func counter(_ values: [String], metric: String = #function, _ make: () -> Counter) -> Counter {
        counters.withLock { $0.cached(Key(metric: metric, values: values), make) }
    }

    private func timer(_ values: [String], metric: String = #function, _ make: () -> Timer) -> Timer {
        timers.withLock { $0.cached(Key(metric: metric, values: values), make) }
    }

    private func gauge(_ values: [String], metric: String = #function, _ make: () -> Gauge) -> Gauge {
        gauges.withLock { $0.cached(Key(metric: metric, values: values), make) }
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
