import FlyingFox
import Foundation
import Logging

/// A local stand-in for bedrock-runtime: `POST /model/{modelId}/converse`, `converse-stream`, `invoke`,
/// `invoke-with-response-stream` and `count-tokens`, and `GET /stats[?since=SECOND]`, over HTTP/1.1 on a BSD
/// socket. Streamed answers are AWS event streams paced at the model's speed (docs/simulator.md).
///
/// Start it in-process (tests) or through the `bedrock-sim` executable (other processes):
/// ```swift
/// var configuration = SimulatorConfiguration()
/// configuration.timeScale = 0.01
/// configuration.models["anthropic.claude-sonnet-4-20250514-v1:0"] = ModelProfile(requestsPerMinute: 50, tokensPerMinute: 20_000)
/// let simulator = try SimulatorServer(configuration: configuration)
/// let endpoint = try await simulator.start()   // http://127.0.0.1:<free port>
/// defer { Task { await simulator.stop() } }
/// ```
public actor SimulatorServer {
    /// The configuration in force.
    public nonisolated let configuration: SimulatorConfiguration
    private let engine: SimulatorEngine
    private let logger: Logger
    private var server: HTTPServer?
    private var runTask: Task<Void, any Error>?
    private var boundPort: Int?

    /// Creates a simulator (not yet listening).
    /// - Parameters:
    ///   - configuration: Models, quotas, faults, clock.
    ///   - logger: Logs start/stop at info and each answer's status at trace (never bodies).
    /// - Throws: ``SimulatorConfigurationError`` if the configuration is invalid.
    public init(configuration: SimulatorConfiguration, logger: Logger = Logger(label: "bedrock-sim")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.engine = SimulatorEngine(configuration: configuration)
        self.logger = logger
    }

    /// The bound port once started.
    public var port: Int? { boundPort }

    /// Binds and starts serving in a background task.
    /// - Returns: The base URL to use as the client's endpoint, e.g. `http://127.0.0.1:53127`.
    /// - Throws: If the address cannot be bound or the server does not come up within 5 seconds.
    @discardableResult
    public func start() async throws -> URL {
        if let boundPort { return baseURL(port: boundPort) }
        guard let port = UInt16(exactly: configuration.port) else {
            throw SimulatorConfigurationError(message: "port \(configuration.port) is outside 0...65535")
        }
        let address: sockaddr_in
        do {
            address = try .inet(ip4: configuration.host, port: port)
        } catch {
            throw SimulatorConfigurationError(message: "host \(configuration.host) is not an IPv4 address")
        }
        let engine = self.engine
        let logger = self.logger
        let server = HTTPServer(
            config: HTTPServer.Configuration(address: address, timeout: 3_600, logger: .disabled),
            handler: ClosureHTTPHandler { request in
                await SimulatorRoutes.handle(request, engine: engine, logger: logger)
            }
        )
        self.server = server
        let runTask = Task { try await server.run() }
        self.runTask = runTask
        do {
            try await server.waitUntilListening(timeout: 5)
        } catch {
            runTask.cancel()
            self.server = nil
            self.runTask = nil
            throw error
        }
        guard case .ip4(_, let actualPort)? = await server.listeningAddress else {
            await stop()
            throw SimulatorConfigurationError(message: "simulator did not report a listening address")
        }
        boundPort = Int(actualPort)
        logger.info("bedrock-sim listening", metadata: [
            "bedrocksim.host": "\(configuration.host)", "bedrocksim.port": "\(actualPort)",
        ])
        return baseURL(port: Int(actualPort))
    }

    /// Stops listening and ends open connections.
    public func stop() async {
        await server?.stop(timeout: 0.2)
        runTask?.cancel()
        server = nil
        runTask = nil
        boundPort = nil
    }

    /// Serves until the calling task is cancelled (for the executable).
    public func run() async throws {
        try await start()
        guard let runTask else { return }
        try await withTaskCancellationHandler {
            _ = try await runTask.value
        } onCancel: {
            runTask.cancel()
        }
    }

    /// The same document `GET /stats` returns.
    public func stats() async -> SimulatorStatsSnapshot {
        await engine.snapshot()
    }

    private func baseURL(port: Int) -> URL {
        let host = configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host
        return URL(string: "http://\(host):\(port)")!
    }
}

/// Routing and wire encoding.
enum SimulatorRoutes {
    static func handle(_ request: HTTPRequest, engine: SimulatorEngine, logger: Logger) async -> HTTPResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map {
            String($0).removingPercentEncoding ?? String($0)
        }
        if request.method == .GET, segments == ["stats"] {
            let since = request.query["since"].flatMap { Int($0) }
            return json(status: .ok, await engine.snapshot(secondsSince: since))
        }
        if request.method == .GET, segments == ["health"] {
            return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain"], body: Data("ok\n".utf8))
        }
        guard request.method == .POST, segments.count == 3, segments[0] == "model",
              ["converse", "converse-stream", "invoke", "invoke-with-response-stream", "count-tokens"].contains(segments[2])
        else {
            await engine.recordUnrouted()
            return error(.unknownOperation())
        }
        guard let authorization = request.headers[.authorization], !authorization.isEmpty else {
            await engine.recordUnauthenticated()
            return error(.missingAuthentication())
        }
        let modelId = segments[1]
        let body: Data
        do {
            body = try await request.bodyData
        } catch {
            return Self.error(.validation("Malformed input request: the body could not be read."))
        }
        if segments[2] == "count-tokens" {
            switch await engine.countTokens(modelId: modelId, body: body) {
            case .success(let tokens): return json(status: .ok, ["inputTokens": tokens])
            case .failure(let failure): return error(failure)
            }
        }
        let operation = segments[2]
        let format: RequestFormat = operation.hasPrefix("invoke") ? .invokeModel : .converse
        let streaming = operation.hasSuffix("stream")
        switch await engine.beginConverse(modelId: modelId, body: body, format: format, streaming: streaming) {
        case .failure(let failure):
            logger.trace("bedrock-sim refused", metadata: [
                "bedrocksim.model": "\(modelId)", "bedrocksim.status": "\(failure.status)",
                "bedrocksim.error_type": "\(failure.errorType)",
            ])
            return error(failure)
        case .success(let plan) where streaming:
            return HTTPResponse(
                statusCode: .ok,
                headers: [
                    .contentType: "application/vnd.amazon.eventstream",
                    HTTPHeader("x-amzn-RequestId"): UUID().uuidString.lowercased(),
                ],
                body: SimulatorStreaming.body(
                    for: plan, flavour: format == .converse ? .converse : .invokeModel, engine: engine,
                    timeScale: engine.configuration.timeScale))
        case .success(let plan):
            // The work happens whatever the client does; the charge is settled even if it hung up.
            try? await Task.sleep(for: plan.wallDelay)
            await engine.finishConverse(plan)
            return format == .converse ? json(status: .ok, ConverseResponseBody(plan: plan)) : InvokeModelAnswer.response(for: plan)
        }
    }

    static func json(status: HTTPStatusCode, _ value: some Encodable) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return HTTPResponse(
            statusCode: status,
            headers: [.contentType: "application/json", HTTPHeader("x-amzn-RequestId"): UUID().uuidString.lowercased()],
            body: data
        )
    }

    static func error(_ failure: SimulatedError) -> HTTPResponse {
        let body = (try? JSONEncoder().encode(["message": failure.message])) ?? Data()
        return HTTPResponse(
            statusCode: HTTPStatusCode(failure.status, phrase: reasonPhrase(failure.status)),
            headers: [
                .contentType: "application/json",
                HTTPHeader("x-amzn-ErrorType"): failure.errorTypeHeader,
                HTTPHeader("x-amzn-RequestId"): UUID().uuidString.lowercased(),
            ],
            body: body
        )
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 408: "Request Timeout"
        case 424: "Failed Dependency"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}

/// The Converse response body, as bedrock-runtime sends it.
struct ConverseResponseBody: Encodable {
    struct Output: Encodable { var message: Message }
    struct Message: Encodable {
        var role = "assistant"
        var content: [Content]
    }
    struct Content: Encodable { var text: String }
    struct Usage: Encodable {
        var inputTokens: Int
        var outputTokens: Int
        var totalTokens: Int
        var cacheReadInputTokens: Int
        var cacheWriteInputTokens: Int
    }
    struct Metrics: Encodable { var latencyMs: Int }

    var output: Output
    var stopReason: String
    var usage: Usage
    var metrics: Metrics

    init(plan: ConversePlan) {
        output = Output(message: Message(content: [Content(text: Self.text(tokens: plan.outputTokens, seed: plan.outputSeed))]))
        stopReason = plan.stopReason
        usage = Usage(
            inputTokens: plan.inputTokens,
            outputTokens: plan.outputTokens,
            totalTokens: plan.inputTokens + plan.cacheReadInputTokens + plan.cacheWriteInputTokens + plan.outputTokens,
            cacheReadInputTokens: plan.cacheReadInputTokens,
            cacheWriteInputTokens: plan.cacheWriteInputTokens
        )
        metrics = Metrics(latencyMs: plan.latencyMs)
    }

    private static let words = ["quota", "token", "model", "region", "budget", "ledger", "fleet", "retry"]

    /// Placeholder text of about `tokens` tokens (one short word each, capped at 16k words).
    static func text(tokens: Int, seed: UInt64) -> String {
        var random = SeededRandom(seed: seed)
        return (0..<min(tokens, 16_384)).map { _ in words[Int(random.next() % UInt64(words.count))] }
            .joined(separator: " ")
    }
}
