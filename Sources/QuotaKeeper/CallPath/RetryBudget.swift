import Synchronization
import TimeLimit

/// The fleet-wide retry budget: retries per target may not exceed a fraction of its calls over a window.
///
/// First attempts are only counted locally and reported with the next retry request, so the happy path
/// costs no Redis round trip; the fleet's count can only lag, which errs toward fewer retries.
final class RetryBudget: Sendable {
    private static let script = RedisScript(name: "retry_budget", source: EmbeddedLuaScripts.retryBudget)

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
        let arguments = [
            String(calls), String(configuration.window.millisecondsRoundedUp),
            String(configuration.bucket.millisecondsRoundedUp), String(configuration.ratio),
            String(configuration.minimumPerWindow),
        ]
        do {
            let reply = try await ledger.redis.evalScript(Self.script, keys: [key(target)], arguments: arguments)
            return reply.array?.first?.integer == 1
        } catch {
            unreportedCalls.withLock { $0[target, default: 0] += calls }
            return false
        }
    }

    /// `<prefix>{<model>@<region>}:retry`, in the ledger's hash slot.
    func key(_ target: BudgetID) -> String { "\(ledger.keyPrefix){\(target)}:retry" }
}
