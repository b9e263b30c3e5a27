import BedrockErrors
import BedrockRuntime
import Foundation
import Logging
import QuotaKeeper
import Synchronization

/// The two ways an app instance calls Bedrock.
enum FleetMode: String, Codable, Sendable, CaseIterable {
    /// The article's per-process advice: backoff retries, a local token limiter, a local breaker.
    case uncoordinated
    /// QuotaKeeper: shared ledger, shared breaker, fleet retry budget, fallback route.
    case coordinated
}

/// One application instance (a separate OS process): its own Bedrock client and, in coordinated mode, its
/// own QuotaKeeper client; sends its app's demand open-loop (arrivals at a fixed rate, whatever the answers).
struct AppInstance {
    let settings: FleetSettings
    let app: AppSpec
    let appIndex: Int
    let mode: FleetMode
    let endpoint: URL
    /// Sign with the fixed demo key (the simulator the orchestrator started); otherwise the AWS credential chain.
    let demoCredentials: Bool
    let redisURL: String?
    let keyPrefix: String
    /// The mode's start (Unix time): every instance begins its demand then.
    let startAt: Date
    let logger: Logger

    func run() async throws -> AppReport {
        var bedrockConfiguration = BedrockRuntimeConfiguration(region: settings.region, endpoint: endpoint)
        if demoCredentials {
            bedrockConfiguration.credentials = StaticCredentialsProvider(AWSCredentials(accessKeyId: "AKIAFLEETDEMO", secretAccessKey: "fleet-demo"))
        }
        bedrockConfiguration.pool.maxConnectionsPerHost = 256
        bedrockConfiguration.timeouts = .init(idle: .seconds(60), total: settings.wall(180))
        let bedrock = BedrockRuntimeClient(configuration: bedrockConfiguration, logger: logger)
        let observations = ClientObservations()
        let calls = FleetBedrockCalls(
            api: settings.api, bedrock: bedrock, prompt: Self.prompt(inputTokens: app.inputTokens, outputTokens: app.outputTokens),
            maxTokens: app.maxOutputTokens, observations: observations)

        let caller: any FleetCaller
        var redis: RedisClient?
        switch mode {
        case .uncoordinated:
            caller = ArticleCaller(client: ArticleClient(settings: settings, observations: observations), settings: settings)
        case .coordinated:
            guard let redisURL else { throw FleetError(.invalidConfiguration, "coordinated mode needs a Redis URL (env QUOTAKEEPER_REDIS_URL)") }
            let client = RedisClient(configuration: try RedisConfiguration(url: redisURL, environment: ProcessInfo.processInfo.environment), logger: logger)
            redis = client
            let ledger = try QuotaLedger(
                redis: client, keyPrefix: keyPrefix, budgets: FleetBudgets.configurations(settings),
                instanceID: "\(app.name)-\(getpid())", logger: logger)
            let coordinator = CallCoordinator(ledger: ledger, configuration: FleetBudgets.callPath(settings), logger: logger)
            caller = CoordinatedCaller(coordinator: coordinator, route: FleetBudgets.route(settings), settings: settings)
        }

        let interval = settings.wall(60 / app.demandRPM)
        // Apps' arrivals are spread over one interval, shifted by the seed (golden-ratio steps).
        let shift = (Double(appIndex) / Double(settings.apps.count) + Double(settings.seed % 1_000_003) * 0.618_033_988_749_895)
            .truncatingRemainder(dividingBy: 1)
        let phase = interval * shift
        let clock = ContinuousClock()
        let start = clock.now + .seconds(max(0, startAt.timeIntervalSinceNow))
        let end = start + .seconds(settings.durationSeconds)
        try await clock.sleep(until: start)

        let records = try await withThrowingTaskGroup(of: RequestRecord.self) { group in
            var arrival = start + settings.wall(app.startSeconds) + phase
            while arrival < end {
                try await clock.sleep(until: arrival)
                let arrivedAt = arrival
                group.addTask {
                    await Self.send(app: app, caller: caller, calls: calls, arrivedAt: arrivedAt, modeStart: start, settings: settings)
                }
                arrival += interval
            }
            var records: [RequestRecord] = []
            for try await record in group { records.append(record) }
            return records.sorted { $0.arrivalMilliseconds < $1.arrivalMilliseconds }
        }
        await redis?.shutdown()
        try? await bedrock.shutdown()
        return AppReport(
            app: app.name, mode: mode.rawValue, requests: records, errorsSeen: observations.kinds,
            breakerOpenings: observations.breakerOpenings)
    }

    /// Sends one request and records what its caller saw.
    static func send(
        app: AppSpec, caller: any FleetCaller, calls: FleetBedrockCalls, arrivedAt: ContinuousClock.Instant,
        modeStart: ContinuousClock.Instant, settings: FleetSettings
    ) async -> RequestRecord {
        let attempts = Attempts()
        var record = await caller.send(app: app, calls, attempts: attempts)
        let clock = ContinuousClock()
        let latency = clock.now - arrivedAt
        record.arrivalMilliseconds = Int((arrivedAt - modeStart).milliseconds)
        record.admittedMilliseconds = attempts.first.map { Int(($0 - modeStart).milliseconds) }
        record.latencyMilliseconds = Int(latency.milliseconds)
        // A little grace for the scheduler of a loaded machine.
        record.withinDeadline = latency <= settings.wall(app.deadlineSeconds) + .milliseconds(250)
        return record
    }

    /// A user message of exactly `inputTokens` tokens as the simulator counts them (4 characters per token,
    /// 4 characters of framing), asking for exactly `outputTokens` of output.
    static func prompt(inputTokens: Int, outputTokens: Int) -> String {
        let marker = "[[sim:output=\(outputTokens)]] "
        let length = max(marker.count, 4 * inputTokens - 4)
        return marker + String(repeating: "x", count: length - marker.count)
    }
}

/// How an app instance turns one request into an answer.
protocol FleetCaller: Sendable {
    /// Sends one request through `calls` and returns what the caller saw (times are filled in by the instance);
    /// every Bedrock attempt is counted in `attempts`.
    func send(app: AppSpec, _ calls: FleetBedrockCalls, attempts: Attempts) async -> RequestRecord
}

/// Uncoordinated: the article's retry loop, token limiter and breaker, primary model only.
struct ArticleCaller: FleetCaller {
    let client: ArticleClient
    let settings: FleetSettings

    func send(app: AppSpec, _ calls: FleetBedrockCalls, attempts: Attempts) async -> RequestRecord {
        var record = RequestRecord(arrivalMilliseconds: 0, latencyMilliseconds: 0, succeeded: false)
        do {
            _ = try await client.call(app: app) {
                attempts.increment()
                let usage = try await calls.whole(settings.primaryModel)
                attempts.succeeded(tokens: usage.inputTokens + usage.outputTokens)
                return usage.inputTokens + usage.outputTokens
            }
            record.succeeded = true
            record.tokens = attempts.tokens
            record.servedBy = settings.primaryModel
        } catch let error as BedrockError {
            record.error = "BedrockError.\(error.kind.rawValue)"
        } catch {
            record.error = "\(type(of: error))"
        }
        record.attempts = attempts.count
        return record
    }
}

/// Coordinated: QuotaKeeper's call path over the route (primary, then the fallback model).
struct CoordinatedCaller: FleetCaller {
    let coordinator: CallCoordinator
    let route: [BudgetID]
    let settings: FleetSettings

    func send(app: AppSpec, _ calls: FleetBedrockCalls, attempts: Attempts) async -> RequestRecord {
        var record = RequestRecord(arrivalMilliseconds: 0, latencyMilliseconds: 0, succeeded: false)
        let estimate = CallEstimate(inputTokens: app.inputTokens, maxOutputTokens: app.maxOutputTokens)
        let options = CallOptions(
            app: app.name, priority: Priority(rawValue: app.priority) ?? .interactive, deadline: settings.wall(app.deadlineSeconds))
        do {
            let served: (target: BudgetID, isFallback: Bool, attempts: Int)
            if calls.api.isStreaming {
                // The streaming call path: retries and fallback until the first content, settled at the end.
                let result = try await coordinator.callStreaming(route: route, estimate: estimate, options: options, meter: { $0 }) { target in
                    attempts.increment()
                    return try await calls.stream(target.model)
                }
                for try await _ in result.value {}
                served = (result.target, result.isFallback, result.attempts)
            } else {
                let result = try await coordinator.call(route: route, estimate: estimate, options: options) { target in
                    attempts.increment()
                    let usage = FleetBedrockCalls.usage(try await calls.whole(target.model))
                    return CallCompletion(value: usage.inputTokens + usage.outputTokens, usage: usage)
                }
                served = (result.target, result.isFallback, result.attempts)
                record.tokens = result.value
            }
            record.succeeded = true
            record.servedBy = served.target.model
            record.isFallback = served.isFallback
            record.attempts = served.attempts
        } catch let error as CallPathError {
            record.error = "CallPathError.\(error.code)"
        } catch {
            record.error = "\(type(of: error))"
        }
        return record
    }
}

/// Bedrock calls made for one request, and when the first one began.
final class Attempts: Sendable {
    private let value = Mutex((count: 0, tokens: Int?.none, first: ContinuousClock.Instant?.none))
    func increment() {
        let now = ContinuousClock.now
        value.withLock {
            $0.count += 1
            if $0.first == nil { $0.first = now }
        }
    }
    var first: ContinuousClock.Instant? { value.withLock { $0.first } }
    /// The tokens Bedrock reported for the attempt that succeeded.
    func succeeded(tokens: Int) { value.withLock { $0.tokens = tokens } }
    var count: Int { value.withLock { $0.count } }
    var tokens: Int? { value.withLock { $0.tokens } }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
