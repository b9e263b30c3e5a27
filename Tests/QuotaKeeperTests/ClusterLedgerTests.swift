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
        try await withLedger(configuration, redisConfiguration: redisConfiguration) { ledger, _ in try await body(ledger) }
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

    @Test("a budget's slot migrated live (IMPORTING/MIGRATING + MIGRATE) while admissions run: exact, nothing lost, all answered")
    func liveMigration() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let (budget, sourcePort) = try await budgetOwnedElsewhere(cluster, "cluster-migrate")
        let slot = HashSlot.slot(of: budget.description)
        let owners = try await cluster.slotOwners()
        let source = try #require(owners.first { $0.slots.contains(slot) })
        let target = try #require(owners.first { $0.port != sourcePort })
        let limit = 600
        let configuration = testConfiguration(budget, rpm: limit, tpm: 1_000_000, window: .seconds(20))
        try await withClusterLedger(cluster, configuration) { ledger in
            let start = ContinuousClock.now
            let tally = try await withThrowingTaskGroup(of: (admitted: Int, denied: Int, errors: [String]).self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        var result = (admitted: 0, denied: 0, errors: [String]())
                        while ContinuousClock.now - start < .milliseconds(2500) {
                            do {
                                let reservation = try await ledger.reserve(budget, app: "migrate", tokens: 100)
                                result.admitted += 1
                                try await reservation.settle(usage: TokenUsage(inputTokens: 40, outputTokens: 0))
                            } catch let error as LedgerError where error.code == .budgetExhausted {
                                result.denied += 1
                            } catch {
                                result.errors.append("\(error)")
                            }
                            try await Task.sleep(for: .milliseconds(25))
                        }
                        return result
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(400))
                    try await migrate(slot: slot, from: source, to: target, owners: owners, cluster)
                    return (0, 0, [])
                }
                return try await group.reduce(into: (admitted: 0, denied: 0, errors: [String]())) {
                    $0.admitted += $1.admitted
                    $0.denied += $1.denied
                    $0.errors += $1.errors
                }
            }
            #expect(try await cluster.masterPort(ofSlot: slot) == target.port)
            #expect(tally.errors.isEmpty, "calls not answered: \(tally.errors.prefix(3))")
            #expect(tally.admitted == limit)
            #expect(tally.denied > 0)
            let status = try await ledger.status(of: budget)
            #expect(status.window.requests == limit)
            #expect(status.window.tokens == limit * 40)  // every settlement counted once, none lost
            let onTarget = try cluster.directClient(port: target.port)
            #expect(try await onTarget.send(["EXISTS", ledger.ledgerKey(budget)]) == .integer(1))
            await onTarget.shutdown()
        }
    }

    /// Moves every key of `slot` as `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on
    /// the source, MIGRATE in batches of 10 keys, then the slot's new owner on the target, the source and the rest.
    private func migrate(
        slot: Int, from source: (slots: ClosedRange<Int>, port: Int, id: String),
        to target: (slots: ClosedRange<Int>, port: Int, id: String),
        owners: [(slots: ClosedRange<Int>, port: Int, id: String)], _ cluster: LocalRedisCluster
    ) async throws {
        try await cluster.command(port: target.port, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", source.id])
        try await cluster.command(port: source.port, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", target.id])
        while true {
            let keys = try await cluster.command(port: source.port, ["CLUSTER", "GETKEYSINSLOT", String(slot), "10"])
                .array?.compactMap(\.string) ?? []
            if keys.isEmpty { break }
            try await cluster.command(
                port: source.port, ["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "REPLACE", "KEYS"] + keys)
        }
        for port in [target.port, source.port] + Set(owners.map(\.port)).subtracting([target.port, source.port]) {
            try await cluster.command(port: port, ["CLUSTER", "SETSLOT", String(slot), "NODE", target.id])
        }
    }
}
