import Synchronization

/// The fleet-wide retry budget: retries per target may not exceed a fraction of its calls over a window.
///
/// First attempts are only counted locally and reported with the next retry request, so the happy path
/// costs no Redis round trip; the fleet's count can only lag, which errs toward fewer retries.
final class RetryBudget: Sendable {
    let ledger: QuotaLedger
    let configuration: CallPathConfiguration.RetryBudget
    private let unreportedCalls = Mutex<[BudgetID: Int]>([:])

    init(ledger: QuotaLedger, configuration: CallPathConfiguration.RetryBudget) {
        self.ledger = ledger
        self.configuration = configuration
    }

    /// Counts a first attempt on `target` (no Redis call).
    func recordCall(on target: BudgetID) {
        unreportedCalls.withLock { $0[target, default: 0] += 1 }
    }

    /// Asks for one retry on `target`; `false` when the fleet has spent its retry budget or Redis cannot
    /// tell (then no retry: an outage must not become a retry storm).
    ///
    /// Redis cost: one `EVALSHA` (`retry_budget`).
    func permitRetry(on target: BudgetID) async -> Bool {
        let calls = unreportedCalls.withLock { $0.removeValue(forKey: target) ?? 0 }
        do {
            return try await ledger.permitRetry(on: target, unreportedCalls: calls, settings: configuration)
        } catch {
            unreportedCalls.withLock { $0[target, default: 0] += calls }
            return false
        }
    }
}
