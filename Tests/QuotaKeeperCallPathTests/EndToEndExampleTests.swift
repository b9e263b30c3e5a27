import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

/// The usage example of docs/call-path.md, compiled and run over real HTTP against bedrock-sim.
@Suite("Call path end to end over HTTP")
struct EndToEndExampleTests {
    @Test("the documented example serves a Converse call and settles Bedrock's usage")
    func documentedExample() async throws {
        var simulatorConfiguration = SimulatorConfiguration()
        simulatorConfiguration.defaultModel = ModelProfile(
            requestsPerMinute: 100, tokensPerMinute: 100_000, timeToFirstTokenMs: 0, outputTokensPerSecond: 1_000_000)
        let simulator = try SimulatorServer(configuration: simulatorConfiguration)
        let endpoint = try await simulator.start()
        let prefix = "qk-test-\(UUID().uuidString.prefix(8)):"

        // --- docs/call-path.md example, from here ---
        let redis = RedisClient(configuration: try RedisConfiguration(url: TestRedis.url))
        let sonnet = BudgetID(model: "anthropic.claude-sonnet-4-20250514-v1:0", region: "us-east-1")
        let haiku = BudgetID(model: "anthropic.claude-3-haiku-20240307-v1:0", region: "us-east-1")
        let ledger = try QuotaLedger(
            redis: redis,
            keyPrefix: prefix,
            budgets: [
                BudgetConfiguration(id: sonnet, limits: .init(requestsPerWindow: 50, tokensPerWindow: 200_000)),
                BudgetConfiguration(id: haiku, limits: .init(requestsPerWindow: 200, tokensPerWindow: 400_000)),
            ])
        let coordinator = CallCoordinator(ledger: ledger)

        var bedrockConfiguration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: endpoint)
        bedrockConfiguration.credentials = StaticCredentialsProvider(
            AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))
        let bedrock = BedrockRuntimeClient(configuration: bedrockConfiguration)

        let request = ConverseRequest(
            messages: [.user("Summarise this ticket in one line.")],
            inferenceConfig: InferenceConfiguration(maxTokens: 256))
        let result = try await coordinator.call(
            route: [sonnet, haiku],
            estimate: CallEstimate(inputTokens: 20, maxOutputTokens: 256),
            options: CallOptions(app: "support-bot", deadline: .seconds(20))
        ) { target in
            let response = try await bedrock.converse(modelId: target.model, request: request)
            let usage = QuotaKeeper.TokenUsage(
                inputTokens: response.usage.inputTokens, outputTokens: response.usage.outputTokens,
                cacheReadInputTokens: response.usage.cacheReadInputTokens,
                cacheWriteInputTokens: response.usage.cacheWriteInputTokens)
            return CallCompletion(value: response, usage: usage)
        }
        print("served by \(result.target), fallback: \(result.isFallback), waited \(result.waited)")
        // --- to here ---

        #expect(result.target == sonnet)
        #expect(!result.value.text.isEmpty)
        let usage = result.value.usage
        #expect(result.chargedTokens == usage.inputTokens + usage.cacheWriteInputTokens + usage.outputTokens * 5, "Sonnet 4 burns output down 5x")
        let status = try await ledger.status(of: sonnet)
        #expect(status.window.requests == 1)
        #expect(status.window.tokens == result.chargedTokens)
        try await TestRedis.deleteKeys(matching: prefix, using: redis)
        await redis.shutdown()
        await simulator.stop()
    }
}
