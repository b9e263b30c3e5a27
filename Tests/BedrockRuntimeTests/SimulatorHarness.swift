import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Logging
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Fixed test credentials (the AWS documentation's example key).
let testCredentials = AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

/// A model profile that answers at once (no first-token delay, very fast generation).
func instantModel(rpm: Int? = nil, tpm: Int? = nil, tpd: Int? = nil, burndown: Double? = nil) -> ModelProfile {
    ModelProfile(requestsPerMinute: rpm, tokensPerMinute: tpm, tokensPerDay: tpd, burndownRate: burndown,
                 timeToFirstTokenMs: 0, outputTokensPerSecond: 1_000_000)
}

/// Runs `body` with a simulator on 127.0.0.1 (free port) and a client pointed at it; stops the simulator after.
func withSimulator<T>(
    configure: (inout SimulatorConfiguration) -> Void,
    client configureClient: (inout BedrockRuntimeConfiguration) -> Void = { _ in },
    logger: Logger = Logger(label: "test.bedrock", factory: { _ in SwiftLogNoOpLogHandler() }),
    _ body: (SimulatorServer, BedrockRuntimeClient) async throws -> T
) async throws -> T {
    var configuration = SimulatorConfiguration()
    configuration.host = "127.0.0.1"
    configuration.port = 0
    configuration.defaultModel = instantModel()
    configure(&configuration)
    let simulator = try SimulatorServer(configuration: configuration)
    let endpoint = try await simulator.start()
    var clientConfiguration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: endpoint)
    clientConfiguration.credentials = StaticCredentialsProvider(testCredentials)
    clientConfiguration.timeouts = .init(idle: .seconds(10), total: .seconds(20))
    configureClient(&clientConfiguration)
    let client = BedrockRuntimeClient(configuration: clientConfiguration, logger: logger)
    do {
        let result = try await body(simulator, client)
        await simulator.stop()
        return result
    } catch {
        await simulator.stop()
        throw error
    }
}

/// A one-message Converse request; `forcedOutput` makes the simulator generate exactly that many tokens.
func prompt(_ text: String = "Summarise the quarterly report in three bullet points.", maxTokens: Int?, forcedOutput: Int? = nil) -> ConverseRequest {
    let directive = forcedOutput.map { " [[sim:output=\($0)]]" } ?? ""
    return ConverseRequest(messages: [.user(text + directive)],
                           inferenceConfig: maxTokens.map { InferenceConfiguration(maxTokens: $0) })
}

/// Calls Converse and returns the classified error it threw (nil on success).
func converseError(_ client: BedrockRuntimeClient, model: String, _ request: ConverseRequest) async -> BedrockError? {
    do {
        _ = try await client.converse(modelId: model, request: request)
        return nil
    } catch let error as BedrockError {
        return error
    } catch {
        return BedrockError(kind: .unknown, message: "unexpected \(type(of: error))")
    }
}

/// Repeats `attempt` (every 50 ms) until it returns nil (success); returns when that happened.
/// - Throws: if no attempt succeeded within `limit`.
func firstSuccess(within limit: Duration, _ attempt: () async -> BedrockError?) async throws -> ContinuousClock.Instant {
    let deadline = ContinuousClock.now + limit
    var last: BedrockError?
    while ContinuousClock.now < deadline {
        last = await attempt()
        if last == nil { return .now }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw BedrockError(kind: .unknown, message: "no success within \(limit); last: \(String(describing: last))")
}

/// Sends a raw HTTP request to the simulator (for what the client never does, e.g. no Authorization).
func rawRequest(_ url: URL, method: String = "POST", body: String = "{}", headers: [String: String] = [:]) async throws -> (Int, [AnyHashable: Any], Data) {
    var request = URLRequest(url: url)
    request.httpMethod = method
    if method != "GET" { request.httpBody = Data(body.utf8) }
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = response as! HTTPURLResponse
    return (http.statusCode, http.allHeaderFields, data)
}
