import Foundation
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing
@testable import QuotaKeeper

/// The ledger on the shared local Redis Cluster (3 masters + 3 replicas), reached through its first node only.
@Suite("Ledger on a Redis Cluster", .serialized)
struct ClusterLedgerTests {
    /// A unique budget whose slot a master other than the seed serves, and that master's port.
    private func budgetOwnedElsewhere(_ cluster: LocalRedisCluster, _ label: String) async throws -> (BudgetID, Int) {
        let owners = try await cluster.slotOwners()
        while true {
            let budget = uniqueBudget(label)
            let slot = HashSlot.slot(of: budget.description)
            if let owner = owners.first(where: { $0.slots.contains(slot) }), owner.port != cluster.nodes[0].port {
                return (budget, owner.port)
            }
        }
    }

    private func withClusterLedger(
        _ cluster: LocalRedisCluster, _ configuration: BudgetConfiguration, _ body: (QuotaLedger) async throws -> Void
    ) async throws {
        var redisConfiguration = try RedisConfiguration(url: cluster.seedURL)
        redisConfiguration.timeouts.command = .seconds(2)
        redisConfiguration.timeouts.connect = .milliseconds(500)
        let redis = RedisClient(configuration: redisConfiguration)
        let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
        var failure: (any Error)?
        do {
            try await ledger.seedBudgets()
            try await body(ledger)
        } catch {
            failure = error
        }
        _ = try? await ledger.deleteBudget(configuration.id)
        try? await TestRedis.deleteKeys(matching: "\(testKeyPrefix){\(configuration.id)}", using: redis)
        await redis.shutdown()
        if let failure { throw failure }
    }

    @Test("8 processes x 32 tasks admit exactly RPM 100 on a budget served by a master other than the seed")
    func exactAcrossProcessesOnAnotherShard() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let (budget, port) = try await budgetOwnedElsewhere(cluster, "cluster-rpm")
        let configuration = testConfiguration(budget, rpm: 100, window: .seconds(4))
        try await withClusterLedger(cluster, configuration) { ledger in
            let results = try await runWorkers(
                processes: 8, budget: budget, mode: "reserve", tasks: 32, run: .milliseconds(1200), redisURL: cluster.seedURL)
            #expect(results.total(\.admitted) == 100)
            #expect(results.total(\.denied) > 0)
            #expect(try await ledger.status(of: budget).window.requests == 100)
            // the ledger lives on the owning master, not on the seed
            let owner = try cluster.directClient(port: port)
            #expect(try await owner.send(["EXISTS", ledger.ledgerKey(budget)]) == .integer(1))
            await owner.shutdown()
        }
    }

    @Test("budget list sees every shard; kill -9 of a budget's master: admissions resume within 15 s")
    func failover() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let (budget, port) = try await budgetOwnedElsewhere(cluster, "cluster-failover")
        let configuration = testConfiguration(budget, rpm: 100_000, window: .seconds(4))
        try await withClusterLedger(cluster, configuration) { ledger in
            _ = try await ledger.reserve(budget, app: "failover", tokens: 1).release()
            #expect(try await ledger.listBudgets().contains(budget))
            let master = try #require(cluster.node(port: port))
            await master.stop()
            let killed = ContinuousClock.now
            var slowest = Duration.zero
            var admitted = false
            while !admitted, ContinuousClock.now - killed < .seconds(20) {
                let attempt = ContinuousClock.now
                do {
                    _ = try await ledger.reserve(budget, app: "failover", tokens: 1).release()
                    admitted = true
                } catch let error as LedgerError {
                    #expect(error.code == .storeUnavailable, "while failing over: \(error)")
                    try await Task.sleep(for: .milliseconds(50))
                }
                slowest = max(slowest, ContinuousClock.now - attempt)
            }
            let resumedAfter = ContinuousClock.now - killed
            #expect(admitted)
            #expect(resumedAfter < .seconds(15), "admissions resumed \(resumedAfter) after the kill")
            #expect(slowest < .seconds(5), "one attempt took \(slowest) (command timeout 2 s)")
            #expect(try await cluster.masterPort(ofSlot: HashSlot.slot(of: budget.description)) != port)
            // the replica's copy of the ledger, or a re-seeded one, serves the budget
            #expect(try await ledger.status(of: budget).settings["rpm"] == 100_000)
            try await master.start()  // rejoins as a replica of the promoted master
            #expect(try await cluster.waitUntilHealthy(within: .seconds(30)))
        }
    }
}
