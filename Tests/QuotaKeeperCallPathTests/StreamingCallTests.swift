import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

/// The streaming call path over real HTTP against bedrock-sim and a real Redis ledger.
@Suite("Streaming call path against bedrock-sim")
struct StreamingCallTests {
    /// The call path's reading of a ConverseStream event.
    static let meter: @Sendable (ConverseStreamEvent) -> StreamEventReading = { event in
        StreamEventReading(
            isContent: event.isContent, outputTokens: event.estimatedOutputTokens,
            usage: event.usage.map {
                QuotaKeeper.TokenUsage(inputTokens: $0.inputTokens, outputTokens: $0.outputTokens,
                                       cacheReadInputTokens: $0.cacheReadInputTokens, cacheWriteInputTokens: $0.cacheWriteInputTokens)
            })
    }

    /// A simulator streaming at 2,000 tokens/s after 20 ms, a client for it and a ledger harness.
    static func withStreamingSetup(
        configure: (inout SimulatorConfiguration, CallPathHarness) -> Void = { _, _ in },
        _ body: (CallPathHarness, BedrockRuntimeClient, SimulatorServer) async throws -> Void
    ) async throws {
        let harness = try CallPathHarness()
        var configuration = SimulatorConfiguration()
        configuration.defaultModel = ModelProfile(timeToFirstTokenMs: 20, outputTokensPerSecond: 2_000)
        configure(&configuration, harness)
        let simulator = try SimulatorServer(configuration: configuration)
        var clientConfiguration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: try await simulator.start())
        clientConfiguration.credentials = StaticCredentialsProvider(
            AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))
        let client = BedrockRuntimeClient(configuration: clientConfiguration)
        do {
            try await body(harness, client, simulator)
        } catch {
            await simulator.stop()
            try await harness.cleanUp()
            throw error
        }
        await simulator.stop()
        try await harness.cleanUp()
    }

    static func request(output: Int) -> ConverseRequest {
        ConverseRequest(messages: [.user("Stream me a story. [[sim:output=\(output)]]")],
                        inferenceConfig: InferenceConfiguration(maxTokens: 200))
    }

    static let estimate = CallEstimate(inputTokens: 12, maxOutputTokens: 200)

    /// A streamed call on the harness's route asking for `output` tokens.
    static func callStreaming(_ harness: CallPathHarness, _ client: BedrockRuntimeClient, output: Int) async throws -> CallResult<CallStream<ConverseStreamEvent>> {
        try await harness.coordinator().callStreaming(
            route: harness.route, estimate: estimate, options: CallOptions(app: "chat", deadline: .seconds(20)), meter: meter
        ) { target in try await client.converseStream(modelId: target.model, request: request(output: output)) }
    }

    @Test("a streamed call is admitted, handed over and settled once from the metadata usage")
    func settlesFromMetadata() async throws {
        try await Self.withStreamingSetup { harness, client, _ in
            let result = try await Self.callStreaming(harness, client, output: 30)
            #expect(result.target == harness.primary && !result.isFallback)
            #expect(result.value.timeToFirstToken != nil)
            var usage: BedrockRuntime.TokenUsage?
            var content = 0
            for try await event in result.value {
                if event.isContent { content += 1 }
                if let reported = event.usage { usage = reported }
            }
            let reported = try #require(usage)
            #expect(reported.outputTokens == 30 && content > 1)
            let status = try await harness.ledger.status(of: harness.primary)
            #expect(status.window.requests == 1)
            #expect(status.window.tokens == reported.inputTokens + 30 * 5, "settled from metadata: input + output x 5")
            #expect(status.inFlight == 0)
        }
    }

    @Test("a throttle mid-stream goes to the caller typed, is not retried, and settles the tokens seen so far")
    func midStreamThrottle() async throws {
        try await Self.withStreamingSetup(configure: { configuration, _ in
            configuration.streamErrors = [StreamErrorInjection(exceptionType: "throttlingException", rate: 1)]
        }) { harness, client, simulator in
            let result = try await Self.callStreaming(harness, client, output: 40)
            var seen = 0
            let error = await #expect(throws: CallPathError.self) {
                for try await event in result.value { seen += event.estimatedOutputTokens }
            }
            #expect(error?.code == .streamInterrupted)
            #expect((error?.underlying as? BedrockError)?.kind == .throttledTokens)
            #expect(seen > 0)
            // Bedrock was called once: no retry, no fallback after content reached the caller.
            let totals = await simulator.stats().totals
            #expect(totals.received == 1 && totals.streamExceptions == 1)
            let status = try await harness.ledger.status(of: harness.primary)
            #expect(status.window.requests == 1)
            #expect(status.window.tokens == Self.estimate.inputTokens + seen * 5, "input + output seen so far x 5")
            #expect(status.breaker.failures == 0, "a quota throttle is not the breaker's business")
        }
    }

    @Test("a 503 mid-stream counts against the breaker")
    func midStreamCapacityFailureCountsForTheBreaker() async throws {
        try await Self.withStreamingSetup(configure: { configuration, _ in
            configuration.streamErrors = [StreamErrorInjection(exceptionType: "serviceUnavailableException", rate: 1)]
        }) { harness, client, _ in
            let result = try await Self.callStreaming(harness, client, output: 40)
            let error = await #expect(throws: CallPathError.self) { for try await _ in result.value {} }
            #expect((error?.underlying as? BedrockError)?.kind == .serviceUnavailable)
            let status = try await harness.ledger.status(of: harness.primary)
            #expect(status.breaker.failures == 1)
        }
    }

    @Test("failures before the first content are retried and fall over like a whole call")
    func retriesAndFallbackBeforeContent() async throws {
        try await Self.withStreamingSetup(configure: { configuration, harness in
            var failing = ModelProfile(timeToFirstTokenMs: 20, outputTokensPerSecond: 2_000)
            failing.serviceUnavailableRate = 1
            configuration.models[harness.primary.model] = failing
        }) { harness, client, simulator in
            let result = try await Self.callStreaming(harness, client, output: 10)
            #expect(result.target == harness.secondary && result.isFallback)
            #expect(result.attempts == 4, "three attempts on the primary, then the fallback")
            var count = 0
            for try await event in result.value where event.isContent { count += 1 }
            #expect(count > 0)
            #expect(await simulator.stats().models[harness.primary.model]?.totals.serviceUnavailable == 3)
            #expect(try await harness.ledger.status(of: harness.primary).window.requests == 0, "failed attempts are released")
            #expect(try await harness.ledger.status(of: harness.secondary).window.requests == 1)
        }
    }

    @Test("cancelling the consumer closes the stream and settles the tokens seen so far, once")
    func cancellationSettlesSeenTokens() async throws {
        try await Self.withStreamingSetup(configure: { configuration, _ in
            configuration.defaultModel = ModelProfile(timeToFirstTokenMs: 10, outputTokensPerSecond: 100)
        }) { harness, client, _ in
            let result = try await Self.callStreaming(harness, client, output: 190)
            let stream = result.value
            let consumer = Task {
                for try await _ in stream {}
            }
            try await Task.sleep(for: .milliseconds(200))
            consumer.cancel()
            _ = await consumer.result
            // Settlement runs in its own task; give it a moment on a loaded machine.
            var status = try await harness.ledger.status(of: harness.primary)
            let deadline = ContinuousClock.now + .seconds(5)
            while status.inFlight > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
                status = try await harness.ledger.status(of: harness.primary)
            }
            #expect(status.inFlight == 0 && status.window.requests == 1)
            #expect(status.window.tokens > Self.estimate.inputTokens)
            #expect(status.window.tokens < Self.estimate.inputTokens + 190 * 5, "only what was seen, not the whole answer")
        }
    }
}
