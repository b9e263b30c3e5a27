import ChildProcesses
import Foundation
import Histogram
import QuotaKeeperRedis

/// Latency samples of one measured operation, in an HdrHistogram of nanoseconds with 3 significant digits: a
/// percentile is the nearest-rank sample's bucket top, at most 1/1024 (0.1%) above the sample and never below it
/// (0.1 us at 100 us), which the one decimal printed in microseconds does not show.
struct LatencySamples {
    private(set) var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)

    init() { histogram.autoResize = true }

    mutating func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        _ = histogram.record(UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000))
    }

    mutating func merge(_ other: LatencySamples) { histogram.add(other.histogram) }

    /// The q-quantile (0...1, nearest rank) in microseconds; NaN without samples.
    func percentile(_ q: Double) -> Double {
        guard histogram.totalCount > 0 else { return .nan }
        return Double(histogram.valueAtPercentile(q * 100)) / 1000
    }
}

/// Runs `operation` `count` times from one caller and returns the latency of each call.
func measureLatency(count: Int, _ operation: () async throws -> Void) async throws -> LatencySamples {
    var samples = LatencySamples()
    let clock = ContinuousClock()
    for _ in 0..<count {
        let started = clock.now
        try await operation()
        samples.record(clock.now - started)
    }
    return samples
}

/// Runs `operation` `total` times split over `callers` concurrent tasks; returns operations per second.
func measureThroughput(total: Int, callers: Int, _ operation: @escaping @Sendable () async throws -> Void) async throws -> Double {
    let perCaller = max(1, total / callers)
    let clock = ContinuousClock()
    let started = clock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<callers {
            group.addTask {
                for _ in 0..<perCaller { try await operation() }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = clock.now - started
    let (seconds, attoseconds) = elapsed.components
    return Double(perCaller * callers) / (Double(seconds) + Double(attoseconds) / 1e18)
}

/// `redis-benchmark` on the same server, command and concurrency, for comparison in the same run.
struct RedisBenchmarkTool {
    let host: String
    let port: Int
    let password: String?
    let username: String?
    /// `--tls --cacert <file>` for a `rediss://` endpoint (the CA file, or the system store when `nil`).
    let tls: RedisConfiguration.TLS?

    init(configuration: RedisConfiguration) throws {
        guard case .tcp(let host, let port) = configuration.endpoint else {
            throw BenchmarkError("redis-benchmark comparison needs a TCP endpoint")
        }
        self.host = host
        self.port = port
        self.password = configuration.password
        self.username = configuration.username
        self.tls = configuration.tls
    }

    /// What one `redis-benchmark` run reported.
    struct Result {
        var requestsPerSecond: Double
        /// Its p50 round trip, in microseconds (redis-benchmark prints milliseconds with 3 decimals).
        var p50Microseconds: Double
    }

    /// Runs `redis-benchmark -c callers -n requests --csv <command...>` (unpipelined: one command per round
    /// trip per client, like a plain client library).
    func run(callers: Int, requests: Int, command: [String]) async throws -> Result {
        let data = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/env"),
            arguments: ["redis-benchmark"] + connectionArguments + ["-c", String(callers), "-n", String(requests), "--csv"] + command,
            standardError: .discarded
        ).standardOutput
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        // CSV: header "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...; then one row.
        let fields = lines.last(where: { !$0.hasPrefix("\"test\"") })?.split(separator: ",")
            .map { Double($0.trimmingCharacters(in: CharacterSet(charactersIn: "\""))) }
        guard let fields, fields.count > 4, let rps = fields[1], let p50 = fields[4] else {
            throw BenchmarkError("could not read redis-benchmark's output for \(command.first ?? "")")
        }
        return Result(requestsPerSecond: rps, p50Microseconds: p50 * 1000)
    }
}

extension RedisBenchmarkTool {
    /// Address, credentials and TLS flags, spelled alike by redis-benchmark and redis-cli.
    var connectionArguments: [String] {
        var arguments = ["-h", host, "-p", String(port)]
        if let username { arguments += ["--user", username] }
        if let password { arguments += ["-a", password] }
        if let tls {
            arguments.append("--tls")
            if let caFile = tls.caFile { arguments += ["--cacert", caFile] }
            if let certificate = tls.certificateFile, let key = tls.privateKeyFile { arguments += ["--cert", certificate, "--key", key] }
        }
        return arguments
    }

    /// Sends `commands` through one `redis-cli --pipe` (RESP, all written at once, replies read as they come):
    /// the server's own ceiling for those commands, with no client library in the way. Returns the seconds it
    /// took; throws if any reply was an error.
    func pipelined(_ commands: [[String]]) async throws -> Double {
        var input = Data()
        for command in commands {
            input.append(contentsOf: "*\(command.count)\r\n".utf8)
            for argument in command {
                input.append(contentsOf: "$\(argument.utf8.count)\r\n\(argument)\r\n".utf8)
            }
        }
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/env"), arguments: ["redis-cli"] + connectionArguments + ["--pipe"],
            standardInput: input, standardError: .discarded)
        let elapsed = clock.now - started
        guard result.status == 0, result.output.contains("errors: 0, replies: \(commands.count)") else {
            throw BenchmarkError("redis-cli --pipe: \(result.output.split(separator: "\n").last ?? "no report")")
        }
        let (seconds, attoseconds) = elapsed.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

struct BenchmarkError: Error, Sendable, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { "BenchmarkError: \(message)" }
}

/// Formats a number with thousands separators.
func grouped(_ value: Double) -> String {
    let formatter = NumberFormatter()
    formatter.numberStyle = .decimal
    formatter.maximumFractionDigits = 0
    return formatter.string(from: NSNumber(value: value)) ?? String(Int(value))
}

/// Right-aligns `text` in a column of `width` characters.
func padded(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}
