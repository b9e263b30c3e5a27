import Foundation
import QuotaKeeper
import TimeLimit

/// QuotaKeeper's configuration for the fleet: one budget per model, time-scaled like the simulator.
enum FleetBudgets {
    /// The ledger's window is Bedrock's (time-scaled), in `bucketCount` buckets. The library makes it exact
    /// against Bedrock's continuously sliding window; the hop margin (`FleetSettings.hopMarginMilliseconds`)
    /// covers the time between an admission and Bedrock's own: no margin of the demo's own.
    static func ledgerWindow(_ settings: FleetSettings) -> Duration {
        wholeBuckets(settings.wall(60), bucketCount(settings))
    }

    /// Buckets of about 50 ms of wall time, at least 100: the ledger counts one bucket more than the window
    /// (docs/ledger.md, "Exact against a sliding window"), and a bucket of a time-scaled window is a larger part
    /// of it than Bedrock's own 1 s bucket is of 60 s.
    static func bucketCount(_ settings: FleetSettings) -> Int {
        max(100, Int((settings.windowSeconds * 20).rounded()))
    }

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
            budget.bucketCount = bucketCount(settings)
            budget.batchCeiling = settings.batchCeiling
            budget.hopMargin = .milliseconds(settings.hopMarginMilliseconds)
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
        let milliseconds = max(Int64(buckets), window.millisecondsRoundedDown)
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
