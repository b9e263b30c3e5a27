import ArgumentParser
import Foundation
import Logging
import Metrics
import QuotaKeeperEMF

/// `quotakeeper-fleet`: the article's multi-app scenarios, uncoordinated vs QuotaKeeper, judged by bedrock-sim.
@main
struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotakeeper-fleet",
        abstract: "Runs a fleet of app processes against bedrock-sim, uncoordinated and with QuotaKeeper, and compares.",
        discussion: """
        Scenarios: spike (60/50/50 RPM against 150 RPM), tokens (a 15,000/5,000-token batch app and two chat apps \
        against a TPM quota), outage (503s and an overload period on the primary model, with a fallback model). \
        Flags override the scenario's preset. Time is scaled: --window-seconds of wall time stand for Bedrock's \
        60 s window. Needs Redis for the coordinated mode (--redis-url or QUOTAKEEPER_REDIS_URL), except with \
        --redis-fault, which starts a redis-server of its own. Exit status: 0 done, 64 bad usage, 2 invalid \
        configuration, 3 bedrock-sim unavailable, 4 an app instance failed, 5 --redis-fault refused for an \
        external Redis, 6 the fleet's own redis-server failed, 1 anything else.
        """,
        subcommands: [Run.self, AppInstanceCommand.self],
        defaultSubcommand: Run.self
    )
}

extension FleetCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a scenario (the default).")

        @Option(help: "Preset: spike, tokens, outage or overload.")
        var scenario: String = "spike"
        @Option(help: "Number of apps (each one OS process); demand and token shapes repeat the preset's last app.")
        var apps: Int?
        @Option(help: "Demand per app in requests per minute, comma-separated (e.g. 60,50,50).")
        var demandRpm: String?
        @Option(help: "Requests-per-minute quota of each model.")
        var quotaRpm: Int?
        @Option(help: "Tokens-per-minute quota of each model.")
        var quotaTpm: Int?
        @Option(help: "Input tokens per request (every app).")
        var inputTokens: Int?
        @Option(help: "maxTokens per request (every app): what Bedrock holds besides the input.")
        var maxOutputTokens: Int?
        @Option(help: "Output tokens the simulator produces per request (every app).")
        var outputTokens: Int?
        @Option(help: "Wall seconds standing for Bedrock's 60 s quota window (the time scale).")
        var windowSeconds: Double?
        @Option(help: "Wall seconds of demand per mode.")
        var durationSeconds: Double?
        @Option(name: .customLong("fault-503-rate"), help: "Probability of an injected 503 per request on the primary model.")
        var fault503Rate: Double?
        @Option(help: "Overload period of the primary model, START:END in wall seconds since the mode's start ('none' for none).")
        var overloadSeconds: String?
        @Option(help: "Fallback model of the coordinated route ('none' for none).")
        var fallbackModel: String?
        @Option(help: "Bedrock operation the apps call: converse, converse-stream, invoke or invoke-stream.")
        var api: String = "converse"
        @Option(name: .customLong("hop-margin-ms"), help: "The ledger's hop margin in wall milliseconds, 0 to 60000 (default 250, the library's; not time-scaled, so it costs the presets' 12 s window 5x what it costs Bedrock's 60 s one).")
        var hopMarginMs: Int?
        @Option(help: "Modes to run, comma-separated: uncoordinated, coordinated.")
        var modes: String = "uncoordinated,coordinated"
        @Option(help: "Use this endpoint instead of starting a bedrock-sim per mode: a running bedrock-sim (its /stats referees the run) or any Bedrock Runtime endpoint (requests signed with the AWS credential chain; the report uses what the app instances saw). Fault flags then do not apply.")
        var endpoint: String?
        @Option(help: "Redis URL (default: env QUOTAKEEPER_REDIS_URL).")
        var redisUrl: String?
        @Option(
            name: .customLong("redis-fault"),
            help: ArgumentHelp(
                "A fault for the coordinated mode, applied to a redis-server the fleet starts for the run (QUOTAKEEPER_REDIS_URL is then not used; --redis-url is refused, exit 5): pause:AT+DURATION (SIGSTOP/SIGCONT), restart:AT+DOWNTIME (kill -9, then the same port, empty), client-kill:AT (CLIENT KILL TYPE normal) or script-flush:AT (SCRIPT FLUSH); wall seconds since the mode's start. Repeatable, in time order.",
                valueName: "fault"))
        var redisFault: [String] = []
        @Option(help: "Write the report as JSON here.")
        var json: String?
        @Option(help: "Write an SVG timeline per mode here.")
        var chart: String?
        @Option(help: ArgumentHelp("Write every app instance's metrics as CloudWatch EMF lines into this folder (<mode>-<app>.emf.jsonl, one flush per window).", valueName: "folder"))
        var emf: String?
        @Option(help: "Seed of the simulator's faults and of the demand phases.")
        var seed: UInt64?
        @Option(help: "Log level: trace ... critical.")
        var logLevel: String = "info"

        func validate() throws {
            guard Scenario(rawValue: scenario) != nil else {
                throw ValidationError("unknown scenario '\(scenario)': use spike, tokens, outage or overload")
            }
            let settings = try settings()
            let modes = try parsedModes()
            let faults = try parsedFaults(durationSeconds: settings.durationSeconds)
            if !faults.isEmpty, !modes.contains(.coordinated) {
                throw ValidationError("--redis-fault applies to the coordinated mode: add it to --modes")
            }
        }

        /// The `--redis-fault` values, checked against the demand period.
        func parsedFaults(durationSeconds: Double) throws -> [RedisFault] {
            do {
                let faults = try redisFault.map(RedisFault.init(parsing:))
                try RedisFault.validate(faults, durationSeconds: durationSeconds)
                return faults
            } catch let error as RedisFault.ParseError {
                throw ValidationError(error.description)
            }
        }

        /// The preset, with every flag given applied over it.
        func settings() throws -> FleetSettings {
            var settings = Scenario(rawValue: scenario)!.settings
            if let apps {
                guard (1...64).contains(apps) else { throw ValidationError("--apps must be from 1 to 64, not \(apps)") }
                settings.apps = (0..<apps).map { index in
                    var app = settings.apps[min(index, settings.apps.count - 1)]
                    if index >= settings.apps.count { app.name = "app-\(index + 1)" }
                    return app
                }
            }
            if let demandRpm {
                let values = demandRpm.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
                guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
                    throw ValidationError("--demand-rpm must be positive numbers separated by commas, not '\(demandRpm)'")
                }
                if apps == nil, values.count != settings.apps.count {
                    settings.apps = (0..<values.count).map { index in
                        var app = settings.apps[min(index, settings.apps.count - 1)]
                        if index >= settings.apps.count { app.name = "app-\(index + 1)" }
                        return app
                    }
                }
                guard values.count == settings.apps.count else {
                    throw ValidationError("--demand-rpm has \(values.count) values for \(settings.apps.count) apps")
                }
                for index in settings.apps.indices { settings.apps[index].demandRPM = values[index]! }
            }
            if let quotaRpm { settings.quotaRPM = quotaRpm }
            if let quotaTpm { settings.quotaTPM = quotaTpm }
            for index in settings.apps.indices {
                if let inputTokens { settings.apps[index].inputTokens = inputTokens }
                if let maxOutputTokens { settings.apps[index].maxOutputTokens = maxOutputTokens }
                if let outputTokens { settings.apps[index].outputTokens = outputTokens }
            }
            if let windowSeconds { settings.windowSeconds = windowSeconds }
            if let durationSeconds { settings.durationSeconds = durationSeconds }
            if let fault503Rate { settings.fault503Rate = fault503Rate }
            if let overloadSeconds {
                if overloadSeconds == "none" {
                    settings.overload = nil
                } else {
                    let parts = overloadSeconds.split(separator: ":").compactMap { Double($0) }
                    guard parts.count == 2, parts[0] >= 0, parts[1] > parts[0] else {
                        throw ValidationError("--overload-seconds must be START:END with 0 <= START < END, not '\(overloadSeconds)'")
                    }
                    settings.overload = OverloadPeriod(start: parts[0], end: parts[1])
                }
            }
            if let fallbackModel { settings.fallbackModel = fallbackModel == "none" ? nil : fallbackModel }
            if let seed { settings.seed = seed }
            if let hopMarginMs {
                guard (0...60_000).contains(hopMarginMs) else { throw ValidationError("--hop-margin-ms must be from 0 to 60000, not \(hopMarginMs)") }
                settings.hopMarginMilliseconds = hopMarginMs
            }
            guard let api = FleetAPI(rawValue: api) else {
                throw ValidationError("unknown --api '\(api)': use \(FleetAPI.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            settings.api = api

            guard settings.quotaRPM.map({ $0 > 0 }) ?? true, settings.quotaTPM.map({ $0 > 0 }) ?? true else {
                throw ValidationError("--quota-rpm and --quota-tpm must be positive")
            }
            guard (0.5...600).contains(settings.windowSeconds) else { throw ValidationError("--window-seconds must be from 0.5 to 600") }
            guard settings.durationSeconds > 0, settings.durationSeconds <= 3600 else { throw ValidationError("--duration-seconds must be from 0 to 3600") }
            guard (0...1).contains(settings.fault503Rate) else { throw ValidationError("--fault-503-rate must be from 0 to 1") }
            for app in settings.apps {
                guard app.inputTokens >= 1, app.maxOutputTokens >= 1, app.outputTokens >= 1, app.outputTokens <= app.maxOutputTokens else {
                    throw ValidationError("tokens must be positive and --output-tokens at most --max-output-tokens (app \(app.name))")
                }
            }
            return settings
        }

        func parsedModes() throws -> [FleetMode] {
            try modes.split(separator: ",").map {
                guard let mode = FleetMode(rawValue: $0.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("unknown mode '\($0)': use uncoordinated, coordinated")
                }
                return mode
            }
        }

        func run() async throws {
            do {
                try await runScenario()
            } catch let error as FleetError {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                throw ExitCode(error.code.exitStatus)
            }
        }

        func runScenario() async throws {
            var logger = Logger(label: "quotakeeper.fleet")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            let settings = try settings()
            let modes = try parsedModes()
            let faults = try parsedFaults(durationSeconds: settings.durationSeconds)
            if !faults.isEmpty, redisUrl != nil {
                throw FleetError(
                    .redisFaultRefused,
                    "--redis-fault is applied only to a redis-server the fleet starts itself, never to a Redis given with --redis-url: leave --redis-url out")
            }
            let redisURL = faults.isEmpty ? redisUrl ?? ProcessInfo.processInfo.environment["QUOTAKEEPER_REDIS_URL"] : nil
            if modes.contains(.coordinated), redisURL == nil, faults.isEmpty {
                throw ValidationError("the coordinated mode needs Redis: pass --redis-url or set QUOTAKEEPER_REDIS_URL")
            }
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            let orchestrator = Orchestrator(
                settings: settings, modes: modes, endpoint: try endpoint.map(Self.parseEndpoint), redisURL: redisURL, redisFaults: faults,
                executable: executable, simulatorExecutable: executable.deletingLastPathComponent().appending(path: "bedrock-sim"),
                emfDirectory: try emf.map(Self.emfDirectory), logger: logger)
            let report = try await orchestrator.run()
            print(ComparisonTable.render(report))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            if let json { try encoder.encode(report).write(to: URL(fileURLWithPath: json)) }
            if let chart { try Data(TimelineChart.svg(report).utf8).write(to: URL(fileURLWithPath: chart)) }
        }

        static func parseEndpoint(_ text: String) throws -> URL {
            guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw ValidationError("--endpoint must be an http(s) URL, not '\(text)'")
            }
            return url
        }
    }

    /// One app instance (a separate OS process started by `run`).
    struct AppInstanceCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "app-instance", abstract: "One app instance of a fleet run (started by `run`).", shouldDisplay: false)

        @Option var settings: String
        @Option var appIndex: Int
        @Option var mode: String
        @Option var endpoint: String
        @Option var keyPrefix: String
        @Option var startAt: Double
        @Option var output: String
        @Option var emf: String?
        @Option var logLevel: String = "warning"
        @Flag var demoCredentials = false

        func run() async throws {
            var logger = Logger(label: "quotakeeper.fleet.app")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
            let settings = try JSONDecoder().decode(FleetSettings.self, from: Data(contentsOf: URL(fileURLWithPath: self.settings)))
            guard settings.apps.indices.contains(appIndex), let mode = FleetMode(rawValue: mode),
                  let endpoint = URL(string: endpoint) else {
                throw ValidationError("bad app-instance arguments")
            }
            logger[metadataKey: "quotakeeper.app"] = "\(settings.apps[appIndex].name)"
            let metrics = RoundTripMetrics()
            let emfFactory = try emf.map { path in
                try EMFExport.factory(path: path, app: settings.apps[appIndex].name, flushInterval: settings.wall(60))
            }
            MetricsSystem.bootstrap(emfFactory.map { MultiplexMetricsHandler(factories: [metrics, $0]) } ?? metrics)
            emfFactory?.startFlushing()
            let instance = AppInstance(
                settings: settings, app: settings.apps[appIndex], appIndex: appIndex, mode: mode, endpoint: endpoint,
                demoCredentials: demoCredentials,
                redisURL: ProcessInfo.processInfo.environment["QUOTAKEEPER_REDIS_URL"], keyPrefix: keyPrefix,
                startAt: Date(timeIntervalSince1970: startAt), logger: logger)
            var report = try await instance.run()
            report.redisRoundTrips = metrics.roundTrips
            report.reservationAnswers = metrics.reservationAnswers
            await emfFactory?.stopFlushing()
            try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: output))
        }
    }
}
