import Foundation
import QuotaKeeperTestSupport
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("quotakeeper export")
struct ExportTests {
    static let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

    /// A budget with every limit set, one call settled (1,000 input + 200 output x burndown 5 = 2,000 tokens)
    /// and one held in flight (100 + 100 tokens).
    static func setUpBudget(_ cli: CLIHarness) async throws {
        let set = try await cli.run([
            "budget", "set", sonnet, "--rpm", "100", "--tpm", "200000", "--tokens-per-day", "1000000", "--in-flight", "10",
            "--effective-ceiling", "0.9",
        ])
        #expect(set.status == 0, "\(set.stderr)")
        let settled = try await cli.run([
            "reserve", sonnet, "--input-tokens", "1000", "--max-output-tokens", "200", "--settle", "--burndown", "5", "--json",
        ])
        #expect(try value(settled.json, "charged_tokens") as? Int == 2000, "\(settled.stdout)")
        let held = try await cli.run(["reserve", sonnet, "--input-tokens", "100", "--max-output-tokens", "100"])
        #expect(held.status == 0, "\(held.stderr)")
    }

    /// What the budget set up above must publish: gauge name and extra label -> value.
    static let expected: [String: Double] = [
        "quotakeeper_budget_requests_in_window": 2, "quotakeeper_budget_tokens_in_window": 2200,
        "quotakeeper_budget_tokens_in_day_window": 2200,
        "quotakeeper_budget_limit{limit=rpm}": 100, "quotakeeper_budget_limit{limit=tpm}": 200_000,
        "quotakeeper_budget_limit{limit=tpd}": 1_000_000,
        "quotakeeper_budget_limit_use_ratio{limit=rpm}": 0.02, "quotakeeper_budget_limit_use_ratio{limit=tpm}": 0.011,
        "quotakeeper_budget_limit_use_ratio{limit=tpd}": 0.0022,
        "quotakeeper_budget_effective_ceiling": 0.9, "quotakeeper_budget_in_flight": 1, "quotakeeper_budget_in_flight_limit": 10,
        "quotakeeper_budget_breaker_open": 0,
        "quotakeeper_budget_breaker_state{state=closed}": 1, "quotakeeper_budget_breaker_state{state=open}": 0,
        "quotakeeper_budget_breaker_state{state=half_open}": 0, "quotakeeper_budget_breaker_state{state=forced_open}": 0,
        "quotakeeper_budget_breaker_state{state=disabled}": 0,
        "quotakeeper_budget_peak_requests_per_minute": 1, "quotakeeper_budget_peak_tokens_per_minute": 2000,
        "quotakeeper_budget_waiters{class=interactive}": 0, "quotakeeper_budget_waiters{class=batch}": 0,
        "quotakeeper_budget_oldest_wait_seconds{class=interactive}": 0, "quotakeeper_budget_oldest_wait_seconds{class=batch}": 0,
    ]

    static func expectMatches(_ published: [String: Double], _ source: String) {
        #expect(Set(published.keys) == Set(expected.keys), "\(source) publishes every gauge once: \(published.keys.sorted())")
        for (key, value) in expected {
            guard let got = published[key] else { continue }
            #expect(abs(got - value) < 1e-9, "\(source): \(key) is \(got), expected \(value)")
        }
    }

    @Test("--format emf: EMF documents with ModelId/Region dimensions and the budget's values")
    func emf() async throws {
        try await CLIHarness.withFreshPrefix("export-emf") { cli in
            try await Self.setUpBudget(cli)
            let run = try await cli.run(["export", "--format", "emf", "--iterations", "1"])
            #expect(run.status == 0, "\(run.stderr)")
            var published: [String: Double] = [:]
            let lines = run.stdout.split(separator: "\n")
            #expect(lines.count == 11, "one document per dimension values (the budget, 3 limits, 5 breaker states, 2 classes): \(run.stdout)")
            for line in lines {
                let document = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                let aws = try #require(document["_aws"] as? [String: Any])
                #expect(aws["Timestamp"] is Int)
                let directives = try #require(aws["CloudWatchMetrics"] as? [[String: Any]])
                #expect(directives.count == 1)
                let directive = directives[0]
                #expect(directive["Namespace"] as? String == "QuotaKeeper")
                let sets = try #require(directive["Dimensions"] as? [[String]])
                #expect(sets.count == 1, "no rollups over budgets")
                let keys = sets[0]
                #expect(Array(keys.prefix(2)) == ["ModelId", "Region"])
                for key in keys { #expect(document[key] is String, "dimension \(key) is a member") }
                #expect(document["ModelId"] as? String == Self.model)
                #expect(document["Region"] as? String == "us-east-1")
                #expect(document["Budget"] == nil)
                let extra = keys.dropFirst(2).map { "\($0.lowercased())=\(document[$0] as? String ?? "?")" }
                for metric in try #require(directive["Metrics"] as? [[String: Any]]) {
                    let name = try #require(metric["Name"] as? String)
                    #expect(["Count", "None", "Seconds"].contains(metric["Unit"] as? String))
                    let number = try #require(document[name] as? NSNumber, "\(name) has one number")
                    published[name + (extra.isEmpty ? "" : "{" + extra.joined(separator: ",") + "}")] = number.doubleValue
                }
            }
            Self.expectMatches(published, "EMF")
        }
    }

    @Test("--format prometheus: HELP and TYPE before samples, valid names and labels, values of the budget")
    func prometheus() async throws {
        try await CLIHarness.withFreshPrefix("export-prom") { cli in
            try await Self.setUpBudget(cli)
            let run = try await cli.run(["export", "--iterations", "2", "--interval", "100ms", "--format", "prometheus"])
            #expect(run.status == 0, "\(run.stderr)")
            let frames = run.stdout.components(separatedBy: "# quotakeeper export ").dropFirst()
            #expect(frames.count == 2, "\(run.stdout)")
            for frame in frames {
                let published = try Self.parseExposition(String(frame.drop { $0 != "\n" }))  // without the frame's comment line
                Self.expectMatches(published, "Prometheus")
            }
            // Every published gauge is documented.
            let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            for document in ["docs/observability.md", "docs/cli.md"] {
                let text = try String(contentsOf: repository.appending(path: document), encoding: .utf8)
                for name in Set(Self.expected.keys.map { String($0.prefix { $0 != "{" }) }) {
                    #expect(text.contains("`\(name)`"), "\(document) documents \(name)")
                }
            }
        }
    }

    /// Parses one exposition (text format 0.0.4) strictly enough for the test: HELP then TYPE once per name,
    /// before its samples; valid metric and label names; well-escaped label values. Returns
    /// `name{extra labels}` -> value, with `budget`, `model` and `region` checked and left out of the key.
    static func parseExposition(_ text: String) throws -> [String: Double] {
        let metricName = #/[a-zA-Z_:][a-zA-Z0-9_:]*/#
        let sample = #/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/#
        let label = #/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/#
        var typed: [String: String] = [:]
        var helped: Set<String> = []
        var published: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let name = String(line.dropFirst(7).prefix { $0 != " " })
                #expect(name.wholeMatch(of: metricName) != nil && !helped.contains(name) && typed[name] == nil, "HELP once, first: \(line)")
                helped.insert(name)
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                #expect(parts.count == 4 && helped.contains(String(parts[2])) && typed[String(parts[2])] == nil, "TYPE once after HELP: \(line)")
                if parts.count == 4 { typed[String(parts[2])] = String(parts[3]) }
            } else {
                let match = try #require(try sample.wholeMatch(in: String(line)), "a sample line: \(line)")
                let name = String(match.output.1)
                #expect(typed[name] == "gauge", "\(name) is typed before its samples")
                var labels: [String: String] = [:]
                var rest = Substring(match.output.2)
                while !rest.isEmpty {
                    let pair = try #require(rest.prefixMatch(of: label), "labels of \(line)")
                    #expect(!pair.output.1.hasPrefix("__"))
                    labels[String(pair.output.1)] = String(pair.output.2)
                    rest = rest[pair.range.upperBound...]
                }
                #expect(labels.removeValue(forKey: "budget") == sonnet)
                #expect(labels.removeValue(forKey: "model") == model)
                #expect(labels.removeValue(forKey: "region") == "us-east-1")
                let value = try #require(Double(match.output.3), "a number: \(line)")
                let key = name + (labels.isEmpty ? "" : "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}")
                #expect(published[key] == nil, "one sample per series: \(key)")
                published[key] = value
            }
        }
        return published
    }

    /// Runs `export --serve <listening>` against a fresh prefix holding the test budget; `body` gets the running
    /// exporter and its base URL (`http://HOST:PORT`).
    static func withServedExporter(
        _ label: String, listening: String, _ body: (ServedExporter, String) async throws -> Void
    ) async throws {
        try await CLIHarness.withFreshPrefix(label) { cli in
            try await setUpBudget(cli)
            let server = try await ServedExporter(arguments: ["export", "--serve", listening, "--redis-url", cli.url, "--prefix", cli.prefix])
            defer { server.kill() }
            try await body(server, try await server.listeningAddress())
        }
    }

    @Test("--serve answers GET /metrics, 404 elsewhere, and exits 0 on SIGTERM")
    func serve() async throws {
        try await Self.withServedExporter("export-serve", listening: "127.0.0.1:0") { server, address in
            let (body, response) = try await URLSession.shared.data(from: URL(string: "\(address)/metrics")!)
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.statusCode == 200)
            #expect((http.value(forHTTPHeaderField: "Content-Type") ?? "").hasPrefix("text/plain; version=0.0.4"))
            let exposition = String(decoding: body, as: UTF8.self)
            Self.expectMatches(try Self.parseExposition(exposition), "GET /metrics")

            let (_, missing) = try await URLSession.shared.data(from: URL(string: "\(address)/other")!)
            #expect((missing as? HTTPURLResponse)?.statusCode == 404)

            let status = try await server.terminate()
            #expect(status == 0, "exits cleanly on SIGTERM: \(server.errorOutput)")
        }
    }

    @Test("without --serve, prints an export every --interval until SIGINT, then exits 0")
    func printsUntilInterrupted() async throws {
        try await CLIHarness.withFreshPrefix("export-interrupt") { cli in
            try await Self.setUpBudget(cli)
            let exporter = try await BackgroundChildProcess(
                try CLIProcess.executable(), arguments: ["export", "--interval", "100ms", "--redis-url", cli.url, "--prefix", cli.prefix],
                standardOutput: .collected, standardError: .collected)
            let printed = await eventually { exporter.standardOutput.contains("# quotakeeper export 2 at ") }
            try #require(printed, "\(exporter.standardOutput)\(exporter.standardError)")
            exporter.signal(SIGINT)
            #expect(try await exporter.waitForExit() == 0, "\(exporter.standardError)")
            #expect(exporter.standardError.isEmpty, "nothing but exports: \(exporter.standardError)")
        }
    }

    @Test("--serve listens on an IPv6 address given in brackets", .enabled(if: IPv6Loopback.isAvailable, "this host has no IPv6 loopback"))
    func serveIPv6() async throws {
        try await Self.withServedExporter("export-serve6", listening: "[::1]:0") { server, address in
            let port = try #require(address.firstMatch(of: #/^http://\[::1\]:(\d+)$/#).flatMap { UInt16($0.output.1) })
            let response = try await IPv6Loopback.get("/metrics", port: port)
            #expect(response.hasPrefix("HTTP/1.1 200"), "\(response.prefix(200))")
            let body = try #require(response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) })
            Self.expectMatches(try Self.parseExposition(body), "GET /metrics over IPv6")
            #expect(try await server.terminate() == 0, "\(server.errorOutput)")
        }
    }

    @Test("errors: Redis down exits 4, a wrong password 5 (also with --serve), a bad --serve or --format emf with --serve 1")
    func errors() async throws {
        let down = try await CLIProcess.run(["export", "--iterations", "1", "--redis-url", "redis://127.0.0.1:1", "--connect-timeout", "200ms"])
        #expect(down.status == 4, "\(down.stderr)")
        #expect(down.stderr == "quotakeeper: error: Redis unavailable: Redis at 127.0.0.1:1: connecting failed: Connection refused\n", "reported once")
        let secured = try await RedisServerProcess(arguments: ["--requirepass", "s3cret-pass"])
        for mode in [["--iterations", "1"], ["--serve", "127.0.0.1:0"]] {
            let wrong = try await CLIProcess.run(["export"] + mode + ["--redis-url", secured.url(password: "hunter2-wrong")])
            #expect(wrong.status == 5, "\(mode): \(wrong.stderr)")
            #expect(!wrong.stderr.contains("hunter2-wrong"))
        }
        await secured.stop()
        #expect(try await CLIProcess.run(["export", "--serve", ":99999"]).isUsageError)
        #expect(try await CLIProcess.run(["export", "--serve", ":9464", "--format", "emf"]).isUsageError)
        for address in ["::1:9464", "[::1:9464", "[]:9464", "[example]:9464"] {
            #expect(try await CLIProcess.run(["export", "--serve", address]).isUsageError, "\(address)")
        }
        let hostName = try await CLIProcess.run(["export", "--serve", "example.com:9464"])  // refused when it listens
        #expect(hostName.status == 1, "\(hostName.stderr)")
        #expect(hostName.stderr == "quotakeeper: error: --serve: 'example.com' is not an IPv4 address\n")
        #expect(try await CLIProcess.run(["export", "--iterations", "0"]).isUsageError)
    }
}

/// The CLI running `export --serve` in the background, its output collected; the exit awaited by polling. Used by
/// one test task only.
final class ServedExporter {
    private let process: BackgroundChildProcess

    init(arguments: [String]) async throws {
        process = try await BackgroundChildProcess(try CLIProcess.executable(), arguments: arguments, standardOutput: .collected, standardError: .collected)
    }

    var errorOutput: String { process.standardError }

    /// `http://127.0.0.1:PORT` or `http://[::1]:PORT` from the "serving ..." line on stderr (within 10 s).
    func listeningAddress() async throws -> String {
        for _ in 0..<200 {
            if let match = errorOutput.firstMatch(of: #/serving (http://(127\.0\.0\.1|\[::1\]):\d+)/metrics/#) { return String(match.output.1) }
            if process.exitStatus != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("export --serve did not start: \(errorOutput)")
    }

    /// Sends SIGTERM and returns the exit status (within 10 s).
    func terminate() async throws -> Int32 {
        process.signal(SIGTERM)
        for _ in 0..<200 {
            if let status = process.exitStatus { return status }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("export --serve did not exit within 10 s of SIGTERM")
    }

    /// Ends the process if a test failed before `terminate` (its output files go with it).
    func kill() {
        process.signal(SIGINT)
    }
}

/// A plain HTTP GET to `[::1]:port` (URLSession on Linux refuses IPv6 literal URLs), on a thread of its own so
/// that its blocking socket calls never hold a cooperative thread.
enum IPv6Loopback {
    /// Whether a socket can bind to [::1] here (containers may run without IPv6).
    static let isAvailable: Bool = {
        let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        return withAddress(port: 0) { bind(descriptor, $0, $1) } == 0
    }()

    /// Calls `body` with `[::1]:port` as a `sockaddr` and its length (for `bind` and `connect`).
    private static func withAddress<Result>(port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = port.bigEndian
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    static func get(_ path: String, port: UInt16) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try blockingGet(path, port: port) }) }
        }
    }

    private static func blockingGet(_ path: String, port: UInt16) throws -> String {
        let descriptor = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestSupportError("socket: errno \(errno)") }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard withAddress(port: port, { connect(descriptor, $0, $1) }) == 0 else { throw TestSupportError("connect to [::1]:\(port): errno \(errno)") }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: [::1]:\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard send(descriptor, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else {
            throw TestSupportError("send: errno \(errno)")
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count <= 0 { break }
            response += buffer[..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }
}
