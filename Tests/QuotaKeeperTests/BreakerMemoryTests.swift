import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

@Suite("Breaker memory")
struct BreakerMemoryTests {
    /// Bytes of every key of the budget (ledger hash, probes, failers), by `MEMORY USAGE`.
    private func budgetBytes(_ ledger: QuotaLedger, _ budget: BudgetID) async throws -> Int64 {
        let base = "\(testKeyPrefix){\(budget)}"
        var total: Int64 = 0
        for key in ["\(base):ledger", "\(base):probes", "\(base):failers"] {
            total += try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer ?? 0
        }
        return total
    }

    /// Reports `count` outcomes (every third a failure), spread over `instances` instance ids.
    private func report(_ count: Int, instances: Int, _ ledgers: [QuotaLedger], _ budget: BudgetID) async throws {
        for index in 0..<count {
            let ledger = ledgers[index % instances]
            do {
                let reservation = try await ledger.reserve(budget, app: "memory", tokens: 1)
                try await reservation.release(outcome: index % 3 == 0 ? .failure : .success, latency: .milliseconds(1))
            } catch let error as LedgerError where error.code == .budgetExhausted {
                continue  // the breaker opened: what it refuses costs no memory either
            }
        }
    }

    @Test("the breaker's state stays the same size however many outcomes and instances it has seen")
    func boundedMemory() async throws {
        var configuration = testConfiguration(uniqueBudget("breaker-memory"), rpm: 1_000_000, window: .seconds(2))
        configuration.dayWindow = .seconds(2)       // every ring fills within the warm-up below
        configuration.dayBucketCount = 20
        configuration.breaker.window = .seconds(1)
        configuration.breaker.bucketCount = 10
        configuration.breaker.quorum = 3            // failing instances are tracked, and must expire
        configuration.breaker.minimumCalls = 100_000  // counts without opening, so every report is written
        configuration.breaker.consecutiveFailureThreshold = nil
        try await withLedger(configuration) { ledger, budget in
            let ledgers = try (0..<20).map { try QuotaLedger(redis: ledger.redis, keyPrefix: testKeyPrefix, instanceID: "instance-\($0)") }
            // Warm-up: outcomes spread over 2.5 s, longer than every ring, so every slot field exists.
            let clock = ContinuousClock()
            let warmUpEnd = clock.now + .milliseconds(2500)
            var reported = 0
            while clock.now < warmUpEnd {
                try await report(50, instances: 20, ledgers, budget)
                reported += 50
            }
            let afterWarmUp = try await budgetBytes(ledger, budget)
            for _ in 0..<3 {
                try await Task.sleep(for: .milliseconds(1100))  // one whole breaker window later
                try await report(1000, instances: 20, ledgers, budget)
            }
            let afterMore = try await budgetBytes(ledger, budget)
            #expect(afterWarmUp > 0)
            #expect(Double(afterMore) <= Double(afterWarmUp) * 1.1, "\(afterWarmUp) bytes after \(reported) outcomes, \(afterMore) after 3,000 more")
            let status = try await ledger.breakerStatus(of: budget)
            #expect(status.failingInstances <= 20, "failing instances are bounded by the window")
        }
    }
}
