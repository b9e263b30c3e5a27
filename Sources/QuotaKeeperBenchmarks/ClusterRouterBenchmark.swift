import ArgumentParser
import Foundation
import QuotaKeeperRedis

/// `quotakeeper-bench router`: what the cluster router adds to one command, beside a client that talks to the
/// same node directly (`cluster=off`), in one run, in alternating rounds so both see the same machine load.
///
/// Against a single redis-server it compares the default `cluster=auto` client (detected as one node) with
/// `cluster=off`; against a cluster node it compares the routed client (slot lookup per command) with a
/// direct client of the master that owns the key.
struct ClusterRouterBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router",
        abstract: "Single-caller p50 of PING and EVALSHA through the cluster router vs a direct client of the same node."
    )

    @OptionGroup var options: BenchmarkOptions

    @Option(help: "Alternating rounds (each round measures both clients).")
    var rounds: Int = 10

    func run() async throws {
        let (routed, configuration) = try options.client()
        var directConfiguration = configuration
        directConfiguration.cluster = .off
        let direct = RedisClient(configuration: directConfiguration)
        let script = RedisScript(name: "bench_increment", source: EmbeddedLuaScripts.benchIncrement)
        try await routed.loadScript(script)
        _ = try await direct.send(["SCRIPT", "LOAD", script.source])
        // a key the configured node serves, so the direct client needs no redirection
        var key = ""
        for candidate in 0..<10_000 {
            key = "quotakeeper-bench:{router-\(candidate)}:counter"
            if (try? await direct.send(["GET", key])) != nil { break }
        }
        let mode = (try? await routed.send(["CLUSTER", "SLOTS"]))?.array.map { "cluster (\($0.count) slot ranges)" } ?? ""
        print("Cluster router vs direct client, Redis at \(configuration.endpoint) \(mode.isEmpty ? "(single node)" : mode), pool \(options.connections) connection(s)")
        print("single caller, \(rounds) alternating rounds of \(options.latencySamples / rounds) samples per client")
        print("")
        print("  command                    routed p50 us   direct p50 us   routed/direct")
        for (name, command) in [("PING", ["PING"]), ("EVALSHA bench_increment", ["EVALSHA", script.sha1, "1", key, "1"])] {
            var routedSamples = LatencySamples()
            var directSamples = LatencySamples()
            let perRound = max(1, options.latencySamples / rounds)
            for _ in 0..<rounds {
                routedSamples.merge(try await measureLatency(count: perRound) { _ = try await routed.send(command) })
                directSamples.merge(try await measureLatency(count: perRound) { _ = try await direct.send(command) })
            }
            let ours = routedSamples.percentile(0.5)
            let theirs = directSamples.percentile(0.5)
            print("  " + padded(name, 25) + "  " + padded(String(format: "%.1f", ours), 13) + "   "
                + padded(String(format: "%.1f", theirs), 13) + "   " + String(format: "%.3f", ours / theirs))
        }
        _ = try await direct.send(["DEL", key])
        await routed.shutdown()
        await direct.shutdown()
    }
}
