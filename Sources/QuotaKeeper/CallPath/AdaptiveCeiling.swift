import Logging
import Synchronization

/// Lowers a budget's effective ceiling fleet-wide when Bedrock throttles calls the ledger admitted (the real
/// quota is lower than configured), and raises it again step by step once such throttles stop.
///
/// The ceiling lives in the ledger (every instance enforces it at once); this instance only decides when to
/// change it. Instances that saw no unexpected throttle never touch it.
final class AdaptiveCeilingController: Sendable {
    private struct Adjustment {
        var ceiling: Double
        var changedAt: ContinuousClock.Instant
    }

    let ledger: QuotaLedger
    let configuration: CallPathConfiguration.AdaptiveCeiling
    let logger: Logger
    let metrics: CallPathMetrics
    /// Times the recovery interval (the call path's clock).
    let clock: any CallPathClock
    private let adjusted = Mutex<[BudgetID: Adjustment]>([:])

    init(
        ledger: QuotaLedger, configuration: CallPathConfiguration.AdaptiveCeiling, logger: Logger, metrics: CallPathMetrics,
        clock: any CallPathClock
    ) {
        self.ledger = ledger
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
    }

    /// Bedrock throttled a call the ledger admitted: multiply the ceiling by the decrease factor.
    ///
    /// Redis cost: one `ledger_configure` `EVALSHA` (read and write in one atomic step).
    func unexpectedThrottle(on budget: BudgetID) async {
        guard configuration.isEnabled else { return }
        do {
            let (current, lowered) = try await ledger.adjustEffectiveCeiling(
                of: budget, .lower(factor: configuration.decreaseFactor, floor: configuration.floor))
            guard lowered < current else { return }
            record(lowered, for: budget)
            logger.info("effective ceiling lowered", metadata: [
                "quotakeeper.budget": "\(budget)", "quotakeeper.ceiling": "\(lowered)", "quotakeeper.previous_ceiling": "\(current)",
            ])
        } catch {
            logger.debug("could not lower the effective ceiling", metadata: ["quotakeeper.budget": "\(budget)", "quotakeeper.error": "\(error)"])
        }
    }

    /// A call succeeded: if this instance lowered the ceiling and no throttle came for a recovery interval,
    /// raise it by one step.
    ///
    /// Redis cost: none, except once per recovery interval while lowered (one `ledger_configure`).
    func success(on budget: BudgetID) async {
        let now = clock.now
        let due = adjusted.withLock { state -> Bool in
            guard let entry = state[budget], now - entry.changedAt >= configuration.recoveryInterval else { return false }
            state[budget]?.changedAt = now  // one raise per interval from this instance
            return true
        }
        guard due else { return }
        do {
            let (_, raised) = try await ledger.adjustEffectiveCeiling(
                of: budget, .raise(step: configuration.recoveryStep, ceiling: 1))
            if raised >= 1 {
                _ = adjusted.withLock { $0.removeValue(forKey: budget) }
            } else {
                record(raised, for: budget)
            }
            logger.info("effective ceiling raised", metadata: ["quotakeeper.budget": "\(budget)", "quotakeeper.ceiling": "\(raised)"])
        } catch {
            logger.debug("could not raise the effective ceiling", metadata: ["quotakeeper.budget": "\(budget)", "quotakeeper.error": "\(error)"])
        }
    }

    private func record(_ ceiling: Double, for budget: BudgetID) {
        let now = clock.now
        adjusted.withLock { $0[budget] = Adjustment(ceiling: ceiling, changedAt: now) }
        metrics.effectiveCeiling(of: budget, ceiling)
    }
}
