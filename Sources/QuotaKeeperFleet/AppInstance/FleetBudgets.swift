import Foundation
import QuotaKeeper

/// QuotaKeeper's configuration for the fleet: one budget per model, time-scaled like the simulator.
enum FleetBudgets {
    /// The ledger's window is longer than Bedrock's by 3% (at least 150 ms of wall time), with 100 buckets.
    ///
    /// The ledger drops a bucket as a whole once the window has moved past it, so a request can leave the
    /// ledger's window up to one granularity (1%) before it leaves Bedrock's continuously sliding one; Bedrock
    /// also admits a request a little later than the ledger did (the HTTP hop, longer on a loaded machine).
    /// The margin covers both and costs about 3% of the quota.
    static func ledgerWindow(_ settings: FleetSettings) -> Duration {
        let window = settings.wall(60)
        return wholeBuckets(window + max(window * 0.03, .milliseconds(150)), bucketCount)
    }

    static let bucketCount = 100

    static func route(_ settings: FleetSettings) -> [BudgetID] {
        ([settings.primaryModel] + (settings.fallbackModel.map { [$0] } ?? [])).map {
            BudgetID(model: $0, region: settings.region)
        }
    }

    static func configurations(_ settings: FleetSettings) -> [BudgetConfiguration] {
        route(settings).map { id in
            var budget = BudgetConfiguration(
                id: id, limits: .init(requestsPerWindow: settings.quotaRPM, tokensPerWindow: settings.quotaTPM))
            budget.window = ledgerWindow(settings)
            budget.bucketCount = bucketCount
            budget.batchCeiling = settings.batchCeiling
            var breaker = BreakerConfiguration()
            breaker.window = wholeBuckets(settings.wall(60), breaker.bucketCount)
            breaker.openDuration = settings.wall(15)
            breaker.maximumOpenDuration = settings.wall(120)
            breaker.probeLease = settings.wall(30)
            budget.breaker = breaker
            return budget
        }
    }

    /// `window` rounded up to whole milliseconds per bucket (the ledger's rule).
    static func wholeBuckets(_ window: Duration, _ buckets: Int) -> Duration {
        let milliseconds = max(Int64(buckets), window.components.seconds * 1000 + window.components.attoseconds / 1_000_000_000_000_000)
        return .milliseconds((milliseconds + Int64(buckets) - 1) / Int64(buckets) * Int64(buckets))
    }

    static func callPath(_ settings: FleetSettings) -> CallPathConfiguration {
        var configuration = CallPathConfiguration()
        configuration.retry.baseDelay = settings.wall(1)
        configuration.retry.maximumDelay = settings.wall(10)
        configuration.retryBudget.window = settings.wall(60)
        configuration.retryBudget.bucket = settings.wall(10)
        configuration.adaptiveCeiling.recoveryInterval = settings.wall(60)
        return configuration
    }
}
