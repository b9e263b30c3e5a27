import Synchronization

/// What a call on each target is expected to take, learned from this coordinator's successful calls
/// (`CallPathPolicy.expectedCallTime(after:observed:)`); the admission leaves that much of the deadline.
final class CallTimeEstimates: Sendable {
    private let estimates = Mutex<[BudgetID: Duration]>([:])

    /// The expected call time on `target` (zero before a call on it succeeded).
    func expected(on target: BudgetID) -> Duration {
        estimates.withLock { $0[target] ?? .zero }
    }

    /// Records a successful call on `target` that took `latency`.
    func record(_ latency: Duration, on target: BudgetID) {
        estimates.withLock { $0[target] = CallPathPolicy.expectedCallTime(after: $0[target], observed: latency) }
    }
}
