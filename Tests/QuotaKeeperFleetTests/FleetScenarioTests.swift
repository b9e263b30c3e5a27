import Foundation
import QuotaKeeperTestSupport
import Testing

/// Short versions of the fleet demo's scenarios, run with the built `quotakeeper-fleet` and `bedrock-sim`
/// binaries (separate processes: the orchestrator, one per app, the simulator) against the real test Redis.
/// The simulator is the referee: every assertion about quota 429s and utilization uses its `/stats` numbers.
///
/// Scales are chosen for a loaded 2-core machine: a 4 s window and a few windows of demand per scenario. The
/// fleet uses the library's defaults: the ledger is exact against Bedrock's sliding window with a 250 ms hop
/// margin of wall time, which on a 4 s window of 100 buckets (40 ms) counts 100 + 1 + 7 buckets: at most
/// 4000 / 4320 = 92.6 % of the quota can be used (on Bedrock's real 60 s window the same costs 3.2 %).
@Suite("quotakeeper-fleet scenarios", .serialized)
struct FleetScenarioTests {
    static let primary = "anthropic.claude-haiku-4-5-20251001-v1:0"

    @Test("spike: coordinated has no quota 429s, loses nothing and uses >= 90% of the quota; uncoordinated is throttled")
    func spike() async throws {
        let report = try await FleetRun.run(["--scenario", "spike", "--window-seconds", "4", "--duration-seconds", "8"])
        let coordinated = try report.mode("coordinated")
        try Self.expectNothingLost(coordinated)
        let referee = try #require(coordinated.referee[Self.primary])
        #expect(referee.quotaThrottles == 0)
        #expect(coordinated.fleet.quotaThrottles == 0)
        // Demand 160 RPM exceeds the 150 RPM quota: it must be used, up to the 92.6 % the exact ledger admits.
        #expect((referee.utilizationMean ?? 0) >= 0.90, "demand 160 RPM exceeds the 150 RPM quota: it must be used")
        #expect(referee.peakWindowRequests <= 150)
        // Where the round trips went: every reservation attempt's answer, plus one settle per admission (and the
        // retry budget's answers, if a call failed).
        let answers = try #require(coordinated.reservationAnswers)
        let admitted = answers["admitted", default: 0]
        #expect(admitted >= referee.admitted && admitted > 0)
        let accounted = answers.values.reduce(0, +) + admitted
        #expect(accounted <= coordinated.redisRoundTrips && coordinated.redisRoundTrips - accounted <= coordinated.redisRoundTrips / 20,
                "\(answers) vs \(coordinated.redisRoundTrips) round trips")

        let uncoordinated = try report.mode("uncoordinated")
        #expect((uncoordinated.referee[Self.primary]?.quotaThrottles ?? 0) > 0, "three apps within 'their' share are throttled together")
        #expect(uncoordinated.fleet.succeeded < coordinated.fleet.succeeded)
    }

    @Test("spike with --api converse-stream: the streaming call path keeps the fleet at zero quota 429s")
    func spikeConverseStream() async throws {
        let report = try await FleetRun.run([
            "--scenario", "spike", "--api", "converse-stream", "--modes", "coordinated", "--window-seconds", "4",
            "--duration-seconds", "6",
        ])
        let coordinated = try report.mode("coordinated")
        try Self.expectNothingLost(coordinated)
        let referee = try #require(coordinated.referee[Self.primary])
        #expect(referee.admitted > 0)
        #expect(referee.quotaThrottles == 0)
        #expect(coordinated.fleet.quotaThrottles == 0)
        #expect(referee.peakWindowRequests <= 150)
    }

    @Test("tokens: no quota 429s, nothing lost, and the batch app never starves the chat apps")
    func tokens() async throws {
        let emf = FileManager.default.temporaryDirectory.appending(path: "fleet-emf-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: emf) }
        let report = try await FleetRun.run([
            "--scenario", "tokens", "--modes", "coordinated", "--window-seconds", "4", "--duration-seconds", "9",
            "--emf", emf.path,
        ])
        let coordinated = try report.mode("coordinated")
        // --emf: every app instance wrote its metrics as CloudWatch EMF lines.
        for app in coordinated.apps {
            let lines = try String(contentsOf: emf.appending(path: "coordinated-\(app.app).emf.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(!lines.isEmpty, "\(app.app) wrote EMF lines")
            for line in lines {
                let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(event["_aws"] is [String: Any] && event["App"] as? String == app.app)
            }
            #expect(lines.contains { $0.contains("\"quotakeeper_calls_total\"") })
        }
        try Self.expectNothingLost(coordinated)
        #expect(coordinated.referee.values.allSatisfy { $0.quotaThrottles == 0 })
        for chat in coordinated.apps where chat.app.hasPrefix("chat") {
            #expect(chat.succeeded == chat.attempted, "interactive \(chat.app) starved: \(chat.failures)")
            #expect(chat.latencyP95 < 10, "interactive \(chat.app) waited \(chat.latencyP95) s at p95")
        }
        let batch = try #require(coordinated.apps.first { $0.app == "batch" })
        #expect(batch.succeeded > 0)
    }

    @Test("outage: the shared breaker bounds the calls reaching the sick model, the fallback serves, traffic returns")
    func outage() async throws {
        let report = try await FleetRun.run([
            "--scenario", "outage", "--modes", "coordinated", "--window-seconds", "4", "--duration-seconds", "10",
            "--overload-seconds", "2:4",
        ])
        let coordinated = try report.mode("coordinated")
        try Self.expectNothingLost(coordinated)
        #expect(coordinated.referee.values.allSatisfy { $0.quotaThrottles == 0 })
        #expect(coordinated.fleet.fallbacksServed > 0)
        #expect(coordinated.breakerOpenings >= 1)
        // 5 consecutive failures open it; then each half-open period lets at most 3 probes through.
        let reached = try #require(coordinated.primaryRequestsDuringOverload)
        #expect(reached <= 5 + 3 * coordinated.breakerOpenings + 3, "\(reached) requests hit the overloaded model")
        // The overload ends at 4 s of wall time (60 simulated seconds): the primary serves again after it.
        let after = (coordinated.timeline[Self.primary] ?? []).filter { $0.second >= 75 }.reduce(0) { $0 + $1.admitted }
        #expect(after > 0, "traffic did not return to the primary after the overload")
    }

    /// Every request succeeded or got a typed error from QuotaKeeper, within its deadline.
    static func expectNothingLost(_ mode: FleetRun.Mode) throws {
        #expect(mode.fleet.attempted > 0)
        #expect(mode.fleet.lost == 0)
        #expect(mode.fleet.late == 0)
        #expect(mode.fleet.succeeded + mode.fleet.failed == mode.fleet.attempted)
        for error in mode.fleet.failures.keys {
            #expect(error.hasPrefix("CallPathError."), "untyped failure \(error)")
        }
    }
}

/// Runs the built `quotakeeper-fleet` and decodes its `--json` report.
enum FleetRun {
    struct Report: Decodable {
        var modes: [Mode]
        func mode(_ name: String) throws -> Mode { try #require(modes.first { $0.mode == name }) }
    }

    struct Mode: Decodable {
        var mode: String
        var apps: [App]
        var fleet: App
        var breakerOpenings: Int
        var referee: [String: Referee]
        var timeline: [String: [Second]]
        var primaryRequestsDuringOverload: Int?
        var redisRoundTrips: Int
        var reservationAnswers: [String: Int]?
        var redisFaults: [Fault]?
        var admissionGapMedianSeconds: Double?
    }

    struct Fault: Decodable {
        var fault: String
        var startedAtSeconds: Double
        var endedAtSeconds: Double
        var admissionGapSeconds: Double
        var callerErrors: [String: Int]
        var quotaThrottles: Int?
    }

    struct App: Decodable {
        var app: String
        var attempted: Int
        var succeeded: Int
        var failed: Int
        var failures: [String: Int]
        var lost: Int
        var late: Int
        var quotaThrottles: Int
        var fallbacksServed: Int
        var latencyP95: Double
    }

    struct Referee: Decodable {
        var admitted: Int
        var quotaThrottles: Int
        var peakWindowRequests: Int
        var utilizationMean: Double?
    }

    struct Second: Decodable {
        var second: Int
        var admitted: Int
    }

    /// Runs a scenario against the test Redis (`--redis-url`), or with `ownRedis` against the redis-server the
    /// fleet starts itself (`--redis-fault`), kept under QUOTAKEEPER_TEST_SERVERS_DIR so scripts/test's trap
    /// stops it if the fleet dies.
    static func run(_ arguments: [String], ownRedis: Bool = false) async throws -> Report {
        try await runWithOutput(arguments, ownRedis: ownRedis).report
    }

    static func runWithOutput(_ arguments: [String], ownRedis: Bool = false) async throws -> (report: Report, output: String) {
        let json = FileManager.default.temporaryDirectory.appending(path: "fleet-test-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        let result = try await runFleet(
            (ownRedis ? [] : ["--redis-url", TestRedis.url]) + ["--json", json.path, "--log-level", "warning"] + arguments)
        try #require(
            result.status == 0,
            "quotakeeper-fleet \(arguments.joined(separator: " ")) exited with \(result.status)\n\(result.output)\(result.errorOutput)")
        return (try JSONDecoder().decode(Report.self, from: Data(contentsOf: json)), result.output)
    }

    /// `quotakeeper-fleet run ARGUMENTS` as it exits; temporary files (the fleet's own redis-server's folder)
    /// under QUOTAKEEPER_TEST_SERVERS_DIR when it is set.
    static func runFleet(_ arguments: [String]) async throws -> ChildProcessResult {
        let fleet = try BuiltProduct.url("quotakeeper-fleet")
        _ = try BuiltProduct.url("bedrock-sim")
        var environment = ProcessInfo.processInfo.environment
        if let servers = environment["QUOTAKEEPER_TEST_SERVERS_DIR"] { environment["TMPDIR"] = servers }
        return try await ChildProcess.run(fleet, arguments: ["run"] + arguments, environment: environment)
    }
}
