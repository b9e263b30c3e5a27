import Foundation
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

/// The CLI given one node of the shared local Redis Cluster: read commands gather every shard's budgets,
/// `reset --all` and `budget delete` reach every shard.
@Suite("quotakeeper on a Redis Cluster")
struct ClusterCLITests {
    @Test("budget list, status, export, reset --all and budget delete see budgets on all three masters")
    func everyShard() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let owners = try await cluster.slotOwners()
        var budgets: [Int: String] = [:]  // one budget per master port
        while budgets.count < Set(owners.map(\.port)).count {
            let name = "model-\(UUID().uuidString.prefix(8).lowercased())@us-east-1"
            let port = try #require(owners.first { $0.slots.contains(HashSlot.slot(of: name)) }).port
            if budgets[port] == nil { budgets[port] = name }
        }
        let names = budgets.values.sorted()
        let cli = CLIHarness(prefix: "qk-cli-cluster-\(UUID().uuidString.prefix(8)):", url: cluster.seedURL)
        let client = RedisClient(configuration: try RedisConfiguration(url: cluster.seedURL))
        defer { _ = Task { await client.shutdown() } }
        do {
            for name in names {
                let set = try await cli.run(["budget", "set", name, "--rpm", "100"])
                #expect(set.status == 0, "\(set.stderr)")
                #expect(try await cli.run(["reserve", name, "--input-tokens", "10", "--max-output-tokens", "10"]).status == 0)
            }
            let list = try await cli.run(["budget", "list", "--json"])
            #expect(list.status == 0, "\(list.stderr)")
            #expect((try list.json["budgets"] as? [[String: Any]])?.compactMap { $0["budget"] as? String } == names)

            let status = try await cli.run(["status", "--json"])
            #expect((try status.json["budgets"] as? [[String: Any]])?.count == names.count)
            let export = try await cli.run(["export", "--iterations", "1", "--format", "prometheus"])
            #expect(export.status == 0, "\(export.stderr)")
            for name in names { #expect(export.stdout.contains(name)) }

            let reset = try await cli.run(["reset", "--all", "--yes", "--json"])
            #expect(reset.status == 0, "\(reset.stderr)")
            let cleared = try #require(try reset.json["reset"] as? [[String: Any]])
            #expect(cleared.compactMap { $0["budget"] as? String } == names)
            #expect(cleared.allSatisfy { value($0, "cleared", "requests") as? Int == 1 })

            let elsewhere = try #require(budgets.first { $0.key != cluster.nodes[0].port }?.value)
            let deleted = try await cli.run(["budget", "delete", elsewhere, "--yes"])
            #expect(deleted.status == 0, "\(deleted.stderr)")
            let after = try await cli.run(["budget", "list", "--json"])
            #expect((try after.json["budgets"] as? [[String: Any]])?.compactMap { $0["budget"] as? String } == names.filter { $0 != elsewhere })
        } catch {
            try? await TestRedis.deleteKeys(matching: cli.prefix, using: client)
            throw error
        }
        try await TestRedis.deleteKeys(matching: cli.prefix, using: client)
    }
}
