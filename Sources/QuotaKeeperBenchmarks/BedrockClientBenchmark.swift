import ArgumentParser
import BedrockRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `quotakeeper-bench bedrock`: the Bedrock client's own cost per call (latency, CPU) against a running
/// bedrock-sim with an instant model, so what is measured is the client and its HTTP stack, not a model.
struct BedrockClientBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bedrock",
        abstract: "Converse round trips to a running bedrock-sim: latency p50/p99 per call and client CPU per call."
    )

    @Option(help: "The bedrock-sim endpoint (start it with an instant default model).")
    var endpoint: String = "http://127.0.0.1:8787"

    @Option(help: "Sequential calls for the single-caller latency.")
    var calls: Int = 2_000

    @Option(help: "Concurrent callers for the throughput run (comma-separated).")
    var callers: String = "1,32"

    @Option(help: "Calls per throughput run.")
    var requests: Int = 4_000

    @Option(help: "Connection pool size.")
    var pool: Int = 64

    func run() async throws {
        guard let url = URL(string: endpoint) else { throw ValidationError("--endpoint is not a URL") }
        var configuration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: url)
        configuration.credentials = StaticCredentialsProvider(AWSCredentials(accessKeyId: "AKIABENCH", secretAccessKey: "bench"))
        configuration.pool.maxConnectionsPerHost = pool
        configuration.timeouts = .init(idle: .seconds(10), total: .seconds(30))
        let client = BedrockRuntimeClient(configuration: configuration)
        let request = ConverseRequest(messages: [.user("Benchmark prompt [[sim:output=8]]")],
                                      inferenceConfig: InferenceConfiguration(maxTokens: 16))
        let model = "anthropic.claude-3-haiku-20240307-v1:0"
        @Sendable func call() async throws { _ = try await client.converse(modelId: model, request: request) }

        for _ in 0..<200 { try await call() }  // warm-up: connections, credentials cache
        print("Bedrock client (Converse, 8 output tokens) against bedrock-sim at \(endpoint), pool \(pool)")
        for callerCount in callers.split(separator: ",").compactMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
            let total = callerCount == 1 ? calls : requests
            let cpuBefore = Self.processCPU()
            let started = ContinuousClock.now
            let samples = try await Self.latencies(total: total, callers: callerCount, call)
            let wall = ContinuousClock.now - started
            let cpu = Self.processCPU() - cpuBefore
            let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
            print("  callers \(padded(String(callerCount), 3))  calls \(total)  p50 \(String(format: "%7.0f", samples.percentile(0.5))) us  p99 \(String(format: "%7.0f", samples.percentile(0.99))) us  \(padded(grouped(Double(total) / seconds), 7)) calls/s  CPU \(String(format: "%5.0f", cpu * 1e6 / Double(total))) us/call")
        }
        try await client.shutdown()
    }

    /// Per-call latencies of `total` calls made by `callers` concurrent loops.
    static func latencies(total: Int, callers: Int, _ call: @escaping @Sendable () async throws -> Void) async throws -> LatencySamples {
        let perCaller = (0..<callers).map { total / callers + ($0 < total % callers ? 1 : 0) }
        return try await withThrowingTaskGroup(of: [Duration].self) { group in
            for count in perCaller {
                group.addTask {
                    var durations: [Duration] = []
                    durations.reserveCapacity(count)
                    for _ in 0..<count {
                        let started = ContinuousClock.now
                        try await call()
                        durations.append(.now - started)
                    }
                    return durations
                }
            }
            var samples = LatencySamples()
            for try await durations in group { durations.forEach { samples.record($0) } }
            return samples
        }
    }

    /// User + system CPU seconds of this process so far.
    static func processCPU() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
