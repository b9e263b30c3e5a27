import Foundation
import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

@Suite("Breaker memory")
struct BreakerMemoryTests {
    /// Bytes (`MEMORY USAGE`) and entries (fields or members) of every key of the budget.
    private func footprint(_ ledger: QuotaLedger, _ budget: BudgetID) async throws -> (bytes: Int64, ledgerFields: Int64, failers: Int64) {
        let base = "\(testKeyPrefix){\(budget)}"
        var bytes: Int64 = 0
        for key in ["\(base):ledger", "\(base):probes", "\(base):failers"] {
            bytes += try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer ?? 0
        }
        let fields = try await ledger.redis.send(["HLEN", "\(base):ledger"]).integer ?? 0
        let failers = try await ledger.redis.send(["ZCARD", "\(base):failers"]).integer ?? 0
        return (bytes, fields, failers)
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

    @Test("the breaker's state is bounded by its geometry however many outcomes and instances it has seen")
    func boundedMemory() async throws {
        var configuration = testConfiguration(uniqueBudget("breaker-memory"), rpm: 1_000_000, window: .seconds(2))
        configuration.dayWindow = .seconds(2)       // every ring fills within the warm-up below
        configuration.dayBucketCount = 20
        configuration.breaker.window = .seconds(1)
        configuration.breaker.bucketCount = 10
        configuration.breaker.quorum = 3            // failing instances are tracked, and must expire
        configuration.breaker.minimumCalls = 100_000  // counts without opening, so every report is written
        configuration.breaker.consecutiveFailureThreshold = nil
        // cfg, st, bst + the slots of the window and day rings (each counts bucketCount + 1 + ceil(hop / granularity)
        // buckets: 24 here) + 10 breaker slots.
        var day = configuration
        (day.window, day.bucketCount) = (configuration.dayWindow, configuration.dayBucketCount)
        let fieldBound = Int64(3 + configuration.countedBuckets + day.countedBuckets + 10)
        #expect(fieldBound == 61)
        try await withLedger(configuration) { ledger, budget in
            let ledgers = try (0..<20).map { try QuotaLedger(redis: ledger.redis, keyPrefix: testKeyPrefix, instanceID: "instance-\($0)") }
            // Two phases of 3 x 1,000 outcomes, each round a whole breaker window after the previous one.
            func phase() async throws -> (bytes: Int64, ledgerFields: Int64, failers: Int64) {
                for _ in 0..<3 {
                    try await report(1000, instances: 20, ledgers, budget)
                    try await Task.sleep(for: .milliseconds(1100))
                }
                return try await footprint(ledger, budget)
            }
            let first = try await phase()
            let second = try await phase()
            // The geometry bounds the hash (fieldBound), the window the failers.
            #expect(first.ledgerFields <= fieldBound && second.ledgerFields <= fieldBound,
                    "\(first.ledgerFields), \(second.ledgerFields) fields, at most \(fieldBound)")
            #expect(first.failers <= 20 && second.failers <= 20)
            // Which slot fields exist depends on which buckets saw outcomes, so the bytes vary below the bound.
            #expect(second.bytes <= 16 * 1024, "\(first.bytes) bytes after 3,000 outcomes, \(second.bytes) after 6,000")
            let status = try await ledger.breakerStatus(of: budget)
            #expect(status.failingInstances <= 20, "failing instances are bounded by the window")
        }
    }
}
