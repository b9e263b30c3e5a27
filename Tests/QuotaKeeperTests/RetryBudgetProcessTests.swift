import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

@Suite("Fleet retry budget across processes")
struct RetryBudgetProcessTests {
    @Test("two processes whose every call fails with 503 retry exactly the fleet's budget, not once per process")
    func retryBudgetCapsRetriesAcrossProcesses() async throws {
        var configuration = testConfiguration(uniqueBudget("retry"), rpm: 1000, window: .seconds(10))
        configuration.breaker.consecutiveFailureThreshold = nil  // keep the breaker out of this count
        configuration.breaker.minimumCalls = 1000
        try await withLedger(configuration) { _, budget in
            // 2 processes x 4 tasks, each one call allowing 10 attempts; the fleet allows 6 retries per window.
            let results = try await runWorkers(
                processes: 2, budget: budget, mode: "retry", tasks: 4, startDelay: .milliseconds(800), run: .seconds(1),
                tokens: [6])
            #expect(results.count == 2)
            #expect(results.total(\.attempts) == 8 + 6, "8 first attempts and exactly 6 retries fleet-wide")
        }
    }
}
