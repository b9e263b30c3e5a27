import ArgumentParser
import Foundation
import QuotaKeeperRedis

/// `quotakeeper-bench`: measures QuotaKeeper against a real Redis, beside `redis-benchmark` in the same run.
@main
struct BenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotakeeper-bench",
        abstract: "Measure QuotaKeeper against a real Redis, beside redis-benchmark in the same run.",
        subcommands: [RedisLayerBenchmark.self, LedgerBenchmark.self, ClusterRouterBenchmark.self, BedrockClientBenchmark.self]
    )
}

/// Options every benchmark shares.
struct BenchmarkOptions: ParsableArguments {
    @Option(help: "Redis URL (TCP, so redis-benchmark can use it too).")
    var redisURL: String = ProcessInfo.processInfo.environment["QUOTAKEEPER_REDIS_URL"] ?? "redis://127.0.0.1:6379"

    @Option(help: "Operations per throughput measurement.")
    var requests: Int = 100_000

    @Option(help: "Sequential operations for the single-caller latency measurement.")
    var latencySamples: Int = 20_000

    @Option(help: "Concurrent callers to measure throughput at (comma-separated).")
    var callers: String = "1,16,64"

    @Option(help: "Connections in QuotaKeeper's Redis pool.")
    var connections: Int = 2

    @Option(help: "rediss:// only: the CA bundle that signed the server's certificate (for QuotaKeeper and redis-benchmark).")
    var tlsCA: String?

    @Option(help: "Microseconds a connection thread polls for the next command before sleeping (default: the library's).")
    var spinMicroseconds: Int?

    var callerCounts: [Int] { callers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func client() throws -> (RedisClient, RedisConfiguration) {
        var configuration = try RedisConfiguration(url: redisURL)
        configuration.pool.connections = connections
        configuration.timeouts.command = .seconds(5)
        if let tlsCA { configuration.tls?.caFile = tlsCA }
        if let spinMicroseconds { configuration.pool.spinBeforeSleep = .microseconds(spinMicroseconds) }
        return (RedisClient(configuration: configuration), configuration)
    }
}

/// `quotakeeper-bench redis`: the Redis layer alone, `PING` and a one-write `EVALSHA`.
struct RedisLayerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Round-trip latency and throughput of PING and a small EVALSHA vs redis-benchmark."
    )

    @OptionGroup var options: BenchmarkOptions

    func run() async throws {
        let (client, configuration) = try options.client()
        let tool = try RedisBenchmarkTool(configuration: configuration)
        let script = RedisScript(name: "bench_increment", source: EmbeddedLuaScripts.benchIncrement)
        try await client.loadScript(script)
        let key = "quotakeeper-bench:{redis-layer}:counter"
        let cases: [(name: String, command: [String])] = [
            ("PING", ["PING"]),
            ("EVALSHA bench_increment", ["EVALSHA", script.sha1, "1", key, "1"]),
        ]
        print("QuotaKeeper Redis layer vs redis-benchmark, Redis at \(configuration.endpoint)\(configuration.tls == nil ? "" : " over TLS"), pool \(options.connections) connection(s), spin \(configuration.pool.spinBeforeSleep)")
        print("")
        for (name, command) in cases {
            let latency = try await measureLatency(count: options.latencySamples) { _ = try await client.send(command) }
            let reference = try await tool.run(callers: 1, requests: options.latencySamples, command: command)
            print("\(name): single caller round trip p50 \(String(format: "%.1f", latency.percentile(0.5))) us (redis-benchmark -c 1: \(String(format: "%.1f", reference.p50Microseconds)) us, ratio \(String(format: "%.2f", latency.percentile(0.5) / reference.p50Microseconds))), p99 \(String(format: "%.1f", latency.percentile(0.99))) us")
            print("  callers   QuotaKeeper ops/s   redis-benchmark ops/s   ratio")
            for callers in options.callerCounts {
                let ours = try await measureThroughput(total: options.requests, callers: callers) { _ = try await client.send(command) }
                let theirs = try await tool.run(callers: callers, requests: options.requests, command: command).requestsPerSecond
                print("  " + padded(String(callers), 7) + "   " + padded(grouped(ours), 17) + "   " + padded(grouped(theirs), 21) + "   " + String(format: "%5.2f", ours / theirs))
            }
            print("")
        }
        _ = try await client.send(["DEL", key])
        await client.shutdown()
    }
}
