import BedrockSimulator
import ChildProcesses
import Foundation
import Logging
import QuotaKeeper
import QuotaKeeperRedis
import Synchronization

/// Runs a scenario in each mode: a simulator (unless one was given), one OS process per app, the referee's
/// numbers, and the comparison.
struct Orchestrator {
    let settings: FleetSettings
    let modes: [FleetMode]
    /// A simulator that is already running (`--endpoint`), instead of starting one per mode.
    let endpoint: URL?
    let redisURL: String?
    /// Faults applied to a redis-server the orchestrator starts for the run (instead of `redisURL`) during the
    /// coordinated mode.
    let redisFaults: [RedisFault]
    /// This executable (the app instances are its hidden `app-instance` subcommand).
    let executable: URL
    let simulatorExecutable: URL
    /// Where app instances write their metrics as EMF lines (nil: they don't).
    let emfDirectory: URL?
    let logger: Logger

    func run() async throws -> FleetReport {
        let directory = FileManager.default.temporaryDirectory.appending(path: "quotakeeper-fleet-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let redisServer = redisFaults.isEmpty ? nil : try await FleetRedisServer.start(logger: logger)
        if let redisServer { logger.info("started redis-server on \(redisServer.url) for the Redis faults") }
        var reports: [ModeReport] = []
        do {
            for (index, mode) in modes.enumerated() {
                if index > 0, endpoint != nil {
                    // A shared simulator: let the previous mode's usage leave the quota window first.
                    try await Task.sleep(for: settings.wall(62))
                }
                logger.info("running \(settings.scenario) in \(mode.rawValue) mode (\(Int(settings.durationSeconds)) s)")
                reports.append(try await runMode(mode, directory: directory, redisServer: redisServer))
            }
        } catch {
            await redisServer?.stop()
            throw error
        }
        await redisServer?.stop()
        return FleetReport(settings: settings, modes: reports)
    }

    /// Runs one mode; with `redisServer` (the Redis the orchestrator started) the coordinated mode uses it and
    /// gets the Redis faults.
    func runMode(_ mode: FleetMode, directory: URL, redisServer: FleetRedisServer? = nil) async throws -> ModeReport {
        // 1. The simulator, and the mode's start on its clock.
        let lead = 1.0
        let simulator = endpoint == nil
            ? try await SimulatorProcess(executable: simulatorExecutable, settings: settings, overloadStartOffset: lead, directory: directory)
            : nil
        do {
            let report = try await runMode(mode, directory: directory, redisServer: redisServer, simulator: simulator, lead: lead)
            await simulator?.stop()
            return report
        } catch {
            await simulator?.stop()
            throw error
        }
    }

    /// One mode against `simulator` (a bedrock-sim started for it), or against `endpoint` when that is nil.
    private func runMode(
        _ mode: FleetMode, directory: URL, redisServer: FleetRedisServer?, simulator: SimulatorProcess?, lead: Double
    ) async throws -> ModeReport {
        let redisURL = redisServer?.url ?? self.redisURL
        let simulatorURL = endpoint ?? simulator!.endpoint
        // A bedrock-sim answers GET /stats (the referee); any other endpoint is judged by what the apps saw.
        let initial: SimulatorStatsSnapshot?
        if simulator != nil {
            initial = try await Referee.stats(from: simulatorURL, since: Int.max)
        } else {
            initial = try? await Referee.stats(from: simulatorURL, since: Int.max)
            if initial == nil { logger.info("\(simulatorURL) has no bedrock-sim /stats: the report uses what the app instances saw") }
        }
        let simulatorStartedAt = Date().addingTimeInterval(-(initial?.uptimeSeconds ?? 0))
        let startAt = max(
            simulatorStartedAt.addingTimeInterval(endpoint == nil ? lead : (initial?.uptimeSeconds ?? 0) + 0.5), Date().addingTimeInterval(0.3))
        let firstSecond = Int((startAt.timeIntervalSince(simulatorStartedAt) / settings.timeScale).rounded(.down))
        let lastSecond = firstSecond + Int((settings.durationSeconds / settings.timeScale).rounded(.down))

        // 2. Redis: a fresh key prefix per mode, budgets seeded, commands counted by the server.
        let keyPrefix = "qk-fleet-\(UUID().uuidString.prefix(8).lowercased()):"
        var redis: RedisClient?
        var ledger: QuotaLedger?
        if mode == .coordinated {
            guard let redisURL else { throw FleetError(.invalidConfiguration, "coordinated mode needs Redis: pass --redis-url or set QUOTAKEEPER_REDIS_URL") }
            let client = RedisClient(configuration: try RedisConfiguration(url: redisURL, environment: ProcessInfo.processInfo.environment), logger: logger)
            redis = client
            let shared = try QuotaLedger(redis: client, keyPrefix: keyPrefix, budgets: FleetBudgets.configurations(settings), logger: logger)
            try await shared.seedBudgets()
            ledger = shared
        }

        // 3. One process per app.
        let settingsFile = directory.appending(path: "settings-\(mode.rawValue).json")
        try JSONEncoder().encode(settings).write(to: settingsFile)
        let clock = ContinuousClock()
        let started = clock.now
        let breakerWatch = ledger.map { BreakerWatch(ledger: $0, budgets: FleetBudgets.route(settings)) }
        let watchTask = breakerWatch.map { watch in Task { await watch.run(every: .milliseconds(50)) } }
        let faultTask = mode == .coordinated ? redisServer.map { server in
            Task { [redisFaults, logger] in try await server.apply(redisFaults, modeStart: startAt, logger: logger) }
        } : nil
        let longestDeadline = settings.apps.map(\.deadlineSeconds).max() ?? 30
        let timeout = Duration.seconds(settings.durationSeconds + startAt.timeIntervalSinceNow) + settings.wall(max(longestDeadline, 200)) + .seconds(30)
        let appReports = try await withThrowingTaskGroup(of: AppReport.self) { group in
            for (index, app) in settings.apps.enumerated() {
                let output = directory.appending(path: "\(mode.rawValue)-\(index).json")
                var arguments = [
                    "app-instance", "--settings", settingsFile.path, "--app-index", String(index), "--mode", mode.rawValue,
                    "--endpoint", simulatorURL.absoluteString, "--key-prefix", keyPrefix,
                    "--start-at", String(startAt.timeIntervalSince1970), "--output", output.path,
                ]
                if logger.logLevel <= .debug { arguments += ["--log-level", "\(logger.logLevel)"] }
                // The fixed demo key only for the simulator started here; any other endpoint gets the AWS chain.
                if simulator != nil { arguments.append("--demo-credentials") }
                if let emfDirectory {
                    arguments += ["--emf", emfDirectory.appending(path: "\(mode.rawValue)-\(app.name).emf.jsonl").path]
                }
                var environment = ProcessInfo.processInfo.environment
                if let redisURL { environment["QUOTAKEEPER_REDIS_URL"] = redisURL }  // not on the command line
                let executable = executable
                group.addTask {
                    let status: Int32
                    do {
                        status = try await ChildProcess.run(
                            executable, arguments: arguments, environment: environment, standardOutput: .inherited, standardError: .inherited,
                            timeout: timeout
                        ).status
                    } catch let error as ChildProcessError where error.code == .timedOut {
                        throw FleetError(.instanceFailed, error.message)
                    }
                    guard status == 0 else { throw FleetError(.instanceFailed, "app instance \(app.name) (\(mode.rawValue)) exited with status \(status)") }
                    return try JSONDecoder().decode(AppReport.self, from: Data(contentsOf: output))
                }
            }
            var reports: [AppReport] = []
            for try await report in group { reports.append(report) }
            return reports
        }
        let appliedFaults = try await faultTask?.value ?? []
        watchTask?.cancel()
        let sharedOpenings = await watchTask?.value ?? 0
        let wallSeconds = (clock.now - started).milliseconds / 1000

        // 4. Redis round trips from the instances' own metrics (server counters would restart with Redis); clean-up.
        let redisRoundTrips = appReports.reduce(0) { $0 + $1.redisRoundTrips }
        if let redis {
            try? await Self.deleteKeys(prefix: keyPrefix, redis)
            await redis.shutdown()
        }

        // 5. The referee: wait until the simulator has settled every admitted request (a bedrock-sim only).
        var stats: SimulatorStatsSnapshot?
        if initial != nil {
            var latest = try await Referee.stats(from: simulatorURL, since: firstSecond)
            for _ in 0..<100 where latest.inFlight > 0 {
                try await Task.sleep(for: .milliseconds(50))
                latest = try await Referee.stats(from: simulatorURL, since: firstSecond)
            }
            stats = latest
        }
        return summarize(
            mode, appReports: appReports, stats: stats, firstSecond: firstSecond, lastSecond: lastSecond,
            sharedBreakerOpenings: sharedOpenings, redisRoundTrips: redisRoundTrips, wallSeconds: wallSeconds,
            appliedFaults: appliedFaults)
    }

    func summarize(
        _ mode: FleetMode, appReports: [AppReport], stats: SimulatorStatsSnapshot?, firstSecond: Int, lastSecond: Int,
        sharedBreakerOpenings: Int, redisRoundTrips: Int, wallSeconds: Double, appliedFaults: [AppliedFault] = []
    ) -> ModeReport {
        let scale = settings.timeScale
        let apps = settings.apps.map { app in
            AppSummary(app: app.name, reports: appReports.filter { $0.app == app.name }, expected: Self.expectedRequests(app, settings), timeScale: scale)
        }
        var fleet = AppSummary(app: "fleet", reports: appReports, expected: apps.reduce(0) { $0 + $1.attempted }, timeScale: scale)
        if mode == .coordinated {
            fleet.breakerOpenings = sharedBreakerOpenings
            fleet.redisRoundTripsPerRequest = fleet.attempted > 0 ? Double(redisRoundTrips) / Double(fleet.attempted) : 0
        }
        var referee: [String: RefereeSummary] = [:]
        var timeline: [String: [TimelineSecond]] = [:]
        let window = Int(stats?.quotaWindowSeconds ?? 60)
        for (model, modelStats) in stats?.models ?? [:] {
            referee[model] = RefereeSummary(
                model: modelStats, from: firstSecond, to: lastSecond, quotaWindow: window,
                fullDemandFrom: firstSecond + Int(settings.fullDemandStartSeconds.rounded(.up)))
            timeline[model] = modelStats.seconds.filter { $0.second >= firstSecond }.map {
                TimelineSecond(
                    second: $0.second - firstSecond, admitted: $0.counters.admitted, tokensHeld: $0.counters.tokensHeld, tokensCharged: $0.counters.tokensCharged,
                    quotaThrottles: $0.counters.throttledRequests + $0.counters.throttledTokens + $0.counters.throttledDaily,
                    overloaded: $0.counters.overloaded, unavailable: $0.counters.serviceUnavailable + $0.counters.tooManyConnections)
            }
        }
        var duringOverload: Int?
        if let overload = settings.overload {
            let period = Int(overload.start / scale)..<Int(overload.end / scale)
            duringOverload = (timeline[settings.primaryModel] ?? []).filter { period.contains($0.second) }.reduce(0) {
                $0 + $1.admitted + $1.quotaThrottles + $1.overloaded + $1.unavailable
            }
        }
        var report = ModeReport(
            mode: mode.rawValue, apps: apps, fleet: fleet, breakerOpenings: fleet.breakerOpenings,
            redisRoundTripsPerRequest: fleet.attempted > 0 ? Double(redisRoundTrips) / Double(fleet.attempted) : 0,
            redisRoundTrips: redisRoundTrips, primaryRequestsDuringOverload: duringOverload, referee: referee,
            timeline: timeline, wallSeconds: wallSeconds,
            source: stats == nil ? .appInstances : .simulatorStats,
            observedUtilization: stats == nil ? Self.observedUtilization(appReports, settings) : nil)
        if mode == .coordinated {
            report.reservationAnswers = appReports.reduce(into: [:]) { total, app in total.merge(app.reservationAnswers, uniquingKeysWith: +) }
        }
        if !appliedFaults.isEmpty {
            let requests = appReports.flatMap(\.requests)
            let quotaWindow = Double(stats?.quotaWindowSeconds ?? 60)
            report.redisFaults = appliedFaults.map {
                FaultReport($0, requests: requests, durationSeconds: settings.durationSeconds, timeScale: scale,
                            quotaWindowSeconds: quotaWindow, timeline: stats == nil ? nil : Array(timeline.values.joined()))
            }
            report.admissionGapMedianSeconds = FaultReport.medianAdmissionGap(requests, durationSeconds: settings.durationSeconds)
        }
        return report
    }

    /// The configured quota's binding dimension used by successful calls over the demand period, from what the
    /// instances saw (requests, or tokens Bedrock reported), for endpoints without a referee.
    static func observedUtilization(_ reports: [AppReport], _ settings: FleetSettings) -> Double? {
        let demandMinutes = (settings.durationSeconds - settings.fullDemandStartSeconds * settings.timeScale) / settings.windowSeconds
        guard demandMinutes > 0 else { return nil }
        let succeeded = reports.flatMap(\.requests).filter { $0.succeeded && $0.servedBy == settings.primaryModel }
        if let quotaRPM = settings.quotaRPM {
            return Double(succeeded.count) / demandMinutes / Double(quotaRPM)
        }
        if let quotaTPM = settings.quotaTPM {
            return Double(succeeded.reduce(0) { $0 + ($1.tokens ?? 0) }) / demandMinutes / Double(quotaTPM)
        }
        return nil
    }

    /// How many requests an app's schedule sends (it skips none, so a shortfall means lost requests).
    static func expectedRequests(_ app: AppSpec, _ settings: FleetSettings) -> Int {
        // Arrivals at phase + k x interval < duration, phase in [0, interval): floor or ceil of duration / interval.
        let perSecond = app.demandRPM / 60 / settings.timeScale
        let sending = settings.durationSeconds - app.startSeconds * settings.timeScale
        return max(0, Int((sending * perSecond).rounded(.down)))
    }

    static func deleteKeys(prefix: String, _ redis: RedisClient) async throws {
        try await redis.unlinkKeys(matching: prefix + "*")
    }
}

/// Counts openings of the shared breakers by polling their state (coordinated mode).
final class BreakerWatch: Sendable {
    let ledger: QuotaLedger
    let budgets: [BudgetID]

    init(ledger: QuotaLedger, budgets: [BudgetID]) {
        self.ledger = ledger
        self.budgets = budgets
    }

    /// Polls until cancelled; returns the openings seen (transitions into open).
    func run(every interval: Duration) async -> Int {
        var last: [BudgetID: BreakerState] = [:]
        var openings = 0
        while !Task.isCancelled {
            for budget in budgets {
                guard let state = try? await ledger.breakerStatus(of: budget).state else { continue }
                if state == .open, last[budget] != .open { openings += 1 }
                last[budget] = state
            }
            try? await Task.sleep(for: interval)
        }
        return openings
    }
}
