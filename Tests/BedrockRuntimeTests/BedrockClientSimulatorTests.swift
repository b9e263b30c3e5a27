import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Logging
import QuotaKeeperTestSupport
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Bedrock client against bedrock-sim over loopback HTTP")
struct BedrockClientSimulatorTests {
    static let sonnet = "anthropic.claude-sonnet-4-20250514-v1:0"

    @Test("a Converse call succeeds and its usage, stop reason and metrics parse")
    func converseSuccess() async throws {
        try await withSimulator(configure: { _ in }) { simulator, client in
            let response = try await client.converse(modelId: Self.sonnet, request: prompt(maxTokens: 100, forcedOutput: 7))
            #expect(response.stopReason == .endTurn)
            #expect(response.usage.outputTokens == 7)
            #expect(response.usage.inputTokens > 0)
            #expect(response.usage.totalTokens == response.usage.inputTokens + 7)
            #expect(response.usage.cacheReadInputTokens == 0)
            #expect(response.metrics?.latencyMs != nil)
            #expect(response.output.message?.role == .assistant)
            #expect(response.text.split(separator: " ").count == 7)
            let stats = await simulator.stats()
            #expect(stats.models[Self.sonnet]?.totals.completed == 1)
        }
    }

    @Test("output is clamped to maxTokens with stop reason max_tokens")
    func maxTokensStop() async throws {
        try await withSimulator(configure: { _ in }) { _, client in
            let response = try await client.converse(modelId: Self.sonnet, request: prompt(maxTokens: 5, forcedOutput: 50))
            #expect(response.stopReason == .maxTokens)
            #expect(response.usage.outputTokens == 5)
        }
    }

    @Test("prompt caching: the first call writes the prefix, the second reads it")
    func cacheUsage() async throws {
        try await withSimulator(configure: { _ in }) { simulator, client in
            let system: [ContentBlock] = [.text(String(repeating: "You are a careful analyst. ", count: 40)), .cachePoint]
            let request = ConverseRequest(messages: [.user("Hello [[sim:output=3]]")], system: system,
                                          inferenceConfig: InferenceConfiguration(maxTokens: 50))
            let first = try await client.converse(modelId: Self.sonnet, request: request)
            let second = try await client.converse(modelId: Self.sonnet, request: request)
            #expect(first.usage.cacheWriteInputTokens > 200)
            #expect(first.usage.cacheReadInputTokens == 0)
            #expect(second.usage.cacheReadInputTokens == first.usage.cacheWriteInputTokens)
            #expect(second.usage.cacheWriteInputTokens == 0)
            #expect(second.usage.inputTokens == first.usage.inputTokens)
            // Charged: input + cache write + output x 5 (Sonnet 4 burndown); cache reads are free.
            let totals = await simulator.stats().models[Self.sonnet]?.totals
            #expect(totals?.tokensCharged == first.usage.inputTokens + first.usage.cacheWriteInputTokens + 15
                + second.usage.inputTokens + 15)
            // Held: the whole input, cache reads included, + maxTokens (the reads come back at settlement).
            #expect(totals?.tokensHeld == first.usage.inputTokens + first.usage.cacheWriteInputTokens + 50
                + second.usage.inputTokens + second.usage.cacheReadInputTokens + 50)
        }
    }

    @Test("CountTokens returns the exact input tokens Converse then reports")
    func countTokens() async throws {
        try await withSimulator(configure: { _ in }) { simulator, client in
            let request = ConverseRequest(messages: [.user("What is the capital of France?")],
                                          system: [.text("Answer briefly.")],
                                          inferenceConfig: InferenceConfiguration(maxTokens: 20))
            let counted = try await client.countTokens(modelId: Self.sonnet, request: CountTokensRequest(converse: request))
            let response = try await client.converse(modelId: Self.sonnet, request: request)
            #expect(counted == response.usage.inputTokens)
            let invoke = try await client.countTokens(modelId: Self.sonnet,
                                                      request: CountTokensRequest(input: .invokeModel(body: #"{"prompt":"hi there"}"#)))
            #expect(invoke > 0)
            #expect(await simulator.stats().models[Self.sonnet]?.totals.countTokensCalls == 2)
        }
    }

    /// One simulator model per injected error class; each must come back classified.
    static let injected: [(InjectedError, BedrockErrorKind)] = [
        (InjectedError(status: 500, errorType: "InternalServerException", message: "Internal server error", rate: 1), .internalServer),
        (InjectedError(status: 408, errorType: "ModelTimeoutException", message: "Model has timed out in processing the request.", rate: 1), .timeout),
        (InjectedError(status: 424, errorType: "ModelErrorException", message: "The model returned an error.", rate: 1), .modelError),
        (InjectedError(status: 429, errorType: "ModelNotReadyException", message: "Model is not ready for inference.", rate: 1), .modelNotReady),
        (InjectedError(status: 403, errorType: "AccessDeniedException", message: "You don't have access to the model.", rate: 1), .accessDenied),
        (InjectedError(status: 400, errorType: "ServiceQuotaExceededException", message: "Quota exceeded.", rate: 1), .quotaExceeded),
        (InjectedError(status: 503, errorType: "ServiceUnavailableException", message: "Bedrock is unable to process your request.", rate: 1), .serviceUnavailable),
    ]

    @Test("every injected error class comes back classified, with status, type and message")
    func injectedErrors() async throws {
        try await withSimulator(configure: { configuration in
            for (index, (error, _)) in Self.injected.enumerated() {
                var profile = instantModel()
                profile.injectedErrors = [error]
                configuration.models["faulty-\(index)"] = profile
            }
        }) { _, client in
            for (index, (injected, kind)) in Self.injected.enumerated() {
                let error = await converseError(client, model: "faulty-\(index)", prompt(maxTokens: 10))
                #expect(error?.kind == kind, "\(injected.errorType)")
                #expect(error?.status == injected.status)
                #expect(error?.errorType == injected.errorType)
                #expect(error?.message == injected.message)
                #expect(error?.source == .http)
            }
        }
    }

    @Test("validation, unknown model and missing Authorization are classified")
    func clientFaults() async throws {
        try await withSimulator(configure: { configuration in
            configuration.defaultModel = nil
            configuration.models[Self.sonnet] = instantModel()
        }) { simulator, client in
            let empty = await converseError(client, model: Self.sonnet, ConverseRequest(messages: []))
            #expect(empty?.kind == .validation)
            #expect(empty?.status == 400)
            let tooLong = await converseError(client, model: Self.sonnet, prompt(maxTokens: 1_000_000))
            #expect(tooLong?.kind == .validation)
            #expect(tooLong?.message.contains("exceeds the model limit") == true)
            let unknown = await converseError(client, model: "no.such-model-v1:0", prompt(maxTokens: 10))
            #expect(unknown?.kind == .notFound)
            #expect(unknown?.status == 404)

            let endpoint = try #require(await simulator.port.map { URL(string: "http://127.0.0.1:\($0)")! })
            let url = endpoint.appendingPathComponent("model/x/converse")
            let (status, headers, data) = try await rawRequest(url, body: #"{"messages":[]}"#)
            #expect(status == 403)
            let header = headers.first { ($0.key as? String)?.lowercased() == "x-amzn-errortype" }?.value as? String
            let message = try JSONDecoder().decode([String: String].self, from: data)["message"]
            let classified = BedrockErrorClassifier().classify(status: status, errorTypeHeader: header, message: message)
            #expect(classified.kind == .accessDenied)
            #expect(classified.errorType == "MissingAuthenticationTokenException")
            #expect(await simulator.stats().unauthenticatedRequests == 1)
        }
    }

    @Test("missing credentials fail in the client as access-denied without sending anything")
    func missingCredentials() async throws {
        try await withSimulator(configure: { _ in }, client: { configuration in
            configuration.credentials = EnvironmentCredentialsProvider(environment: [:])
        }) { simulator, client in
            let error = await converseError(client, model: Self.sonnet, prompt(maxTokens: 10))
            #expect(error?.kind == .accessDenied)
            #expect(error?.source == .client)
            #expect(await simulator.stats().totals.received == 0)
        }
    }

    @Test("a call slower than the total timeout fails as timeout")
    func timeout() async throws {
        try await withSimulator(configure: { configuration in
            configuration.models["slow-model"] = ModelProfile(timeToFirstTokenMs: 3_000, outputTokensPerSecond: 1_000_000)
        }, client: { configuration in
            configuration.timeouts = .init(idle: .seconds(10), total: .milliseconds(400))
        }) { _, client in
            let started = ContinuousClock.now
            let error = await converseError(client, model: "slow-model", prompt(maxTokens: 10, forcedOutput: 1))
            #expect(error?.kind == .timeout)
            #expect(error?.source == .transport)
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(350), "\(elapsed) \(String(describing: error))")
            #expect(elapsed < .seconds(2.5))
        }
    }

    @Test("an unreachable endpoint fails as connection-failed")
    func connectionRefused() async throws {
        var port = 0
        try await withSimulator(configure: { _ in }) { simulator, _ in port = await simulator.port ?? 0 }
        var configuration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:\(port)")!)
        configuration.credentials = StaticCredentialsProvider(testCredentials)
        let client = BedrockRuntimeClient(configuration: configuration)
        let error = await converseError(client, model: Self.sonnet, prompt(maxTokens: 10))
        #expect(error?.kind == .connectionFailed)
        #expect(error?.kind.isRetryable == true)
    }

    @Test("no prompt, response text or credential appears in any log line at trace level")
    func nothingSensitiveLogged() async throws {
        let log = RecordedLog()
        let logger = log.logger(label: "test.bedrock")
        let secretPrompt = "TOP-SECRET-PROMPT-7781"
        try await withSimulator(configure: { configuration in
            configuration.models["throttled"] = instantModel(rpm: 0)
        }, logger: logger) { _, client in
            let response = try await client.converse(modelId: Self.sonnet, request: prompt(secretPrompt, maxTokens: 20, forcedOutput: 4))
            _ = await converseError(client, model: "throttled", prompt(secretPrompt, maxTokens: 20))
            let lines = log.all
            #expect(lines.count >= 2)
            for line in lines {
                #expect(!line.contains(secretPrompt))
                #expect(!line.contains(response.text))
                #expect(!line.contains(testCredentials.secretAccessKey))
                #expect(!line.contains("Signature="))
            }
        }
        #expect(!"\(testCredentials)".contains(testCredentials.secretAccessKey))
    }
}
