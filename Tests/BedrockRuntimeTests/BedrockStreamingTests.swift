import AWSEventStream
import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Testing

@Suite("Streaming and InvokeModel against bedrock-sim over loopback HTTP")
struct BedrockStreamingTests {
    static let sonnet = "anthropic.claude-sonnet-4-20250514-v1:0"

    /// A model that streams slowly enough for the stream to arrive in many reads, fast enough for tests.
    static func pacedModel(tpm: Int? = nil) -> ModelProfile {
        ModelProfile(tokensPerMinute: tpm, timeToFirstTokenMs: 20, outputTokensPerSecond: 2_000)
    }

    static func collect(_ events: AsyncThrowingStream<ConverseStreamEvent, any Error>) async throws -> [ConverseStreamEvent] {
        var collected: [ConverseStreamEvent] = []
        for try await event in events { collected.append(event) }
        return collected
    }

    @Test("ConverseStream yields messageStart, text deltas, stops and metadata with the usage Converse reports")
    func converseStreamEvents() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.pacedModel() }) { simulator, client in
            let events = try await Self.collect(
                try await client.converseStream(modelId: Self.sonnet, request: prompt(maxTokens: 200, forcedOutput: 40)))
            #expect(events.first == .messageStart(role: .assistant))
            let text = events.compactMap { event -> String? in
                if case .contentBlockDelta(0, .text(let text)) = event { return text }
                return nil
            }.joined()
            #expect(text.split(separator: " ").count == 40)
            #expect(events.filter(\.isContent).count > 1)
            #expect(events.contains(.contentBlockStop(index: 0)))
            #expect(events.contains(.messageStop(stopReason: .endTurn, additionalModelResponseFields: nil)))
            let usage = try #require(events.last?.usage)
            #expect(usage.outputTokens == 40 && usage.inputTokens > 0)
            #expect(events.reduce(0) { $0 + $1.estimatedOutputTokens } >= 40)
            let totals = await simulator.stats().models[Self.sonnet]?.totals
            #expect(totals?.completed == 1)
            // Sonnet 4: input + output x 5.
            #expect(totals?.tokensCharged == usage.inputTokens + 200)
        }
    }

    @Test("an exception event mid-stream is thrown classified, after the content already sent",
          arguments: [("throttlingException", BedrockErrorKind.throttledTokens),
                      ("serviceUnavailableException", .serviceUnavailable),
                      ("modelStreamErrorException", .modelError),
                      ("internalServerException", .internalServer),
                      ("validationException", .validation),
                      ("modelTimeoutException", .timeout)])
    func midStreamException(type: String, kind: BedrockErrorKind) async throws {
        try await withSimulator(configure: {
            $0.defaultModel = Self.pacedModel()
            $0.streamErrors = [StreamErrorInjection(exceptionType: type, rate: 1)]
        }) { simulator, client in
            var seen: [ConverseStreamEvent] = []
            let error = await #expect(throws: BedrockError.self) {
                for try await event in try await client.converseStream(modelId: Self.sonnet, request: prompt(maxTokens: 100, forcedOutput: 20)) {
                    seen.append(event)
                }
            }
            #expect(error?.kind == kind)
            #expect(error?.source == .streamEvent)
            #expect(seen.contains { $0.isContent })
            #expect(!seen.contains { $0.usage != nil })
            // The simulator charged the input and the 10 output tokens sent (x 5), and counted the exception.
            let totals = await simulator.stats().models[Self.sonnet]?.totals
            #expect(totals?.streamExceptions == 1)
            #expect(totals?.outputTokens == 10)
        }
    }

    @Test("a quota throttle before the stream is thrown by converseStream itself")
    func throttledBeforeStream() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.pacedModel(tpm: 100) }) { _, client in
            let error = await #expect(throws: BedrockError.self) {
                _ = try await client.converseStream(modelId: Self.sonnet, request: prompt(maxTokens: 500))
            }
            #expect(error?.kind == .throttledTokens)
            #expect(error?.status == 429)
        }
    }

    @Test("InvokeModel returns the native body and usage from the token-count headers")
    func invokeModel() async throws {
        try await withSimulator(configure: { _ in }) { simulator, client in
            let body = Data(#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":"Hello there [[sim:output=6]]"}]}"#.utf8)
            let response = try await client.invokeModel(modelId: Self.sonnet, body: body)
            let usage = try #require(response.usage)
            #expect(usage.outputTokens == 6 && usage.inputTokens > 0)
            #expect(response.invocationLatencyMs != nil)
            let native = try JSONSerialization.jsonObject(with: response.body) as? [String: Any]
            #expect(native?["stop_reason"] as? String == "end_turn")
            #expect(await simulator.stats().models[Self.sonnet]?.totals.outputTokens == 6)
        }
    }

    @Test("InvokeModelWithResponseStream yields native chunks; the last carries amazon-bedrock-invocationMetrics")
    func invokeModelWithResponseStream() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.pacedModel() }) { _, client in
            let body = Data(#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"messages":[{"role":"user","content":[{"type":"text","text":"Hi [[sim:output=12]]"}]}]}"#.utf8)
            var chunks: [InvokeModelChunk] = []
            for try await chunk in try await client.invokeModelWithResponseStream(modelId: Self.sonnet, body: body) {
                chunks.append(chunk)
            }
            let metrics = try #require(chunks.last?.invocationMetrics)
            #expect(metrics.outputTokenCount == 12 && metrics.inputTokenCount > 0)
            #expect(chunks.dropLast().allSatisfy { $0.invocationMetrics == nil })
            let types = chunks.compactMap { (try? JSONSerialization.jsonObject(with: $0.bytes) as? [String: Any])?["type"] as? String }
            #expect(types.first == "message_start" && types.last == "message_stop" && types.contains("content_block_delta"))
        }
    }

    @Test("a stream longer than the idle timeout survives while bytes keep arriving (the timeout is idle, not total)")
    func idleTimeoutIsNotAStreamLimit() async throws {
        // 2.5 s of output in 32 deltas (one every ~80 ms) against a 1 s idle timeout.
        let slow = ModelProfile(timeToFirstTokenMs: 10, outputTokensPerSecond: 100)
        try await withSimulator(configure: { $0.defaultModel = slow }, client: { $0.timeouts = .init(idle: .seconds(1), total: .seconds(20)) }) { _, client in
            let started = ContinuousClock.now
            let events = try await Self.collect(
                try await client.converseStream(modelId: Self.sonnet, request: prompt(maxTokens: 500, forcedOutput: 250)))
            #expect(ContinuousClock.now - started > .seconds(2))
            #expect(events.last?.usage?.outputTokens == 250)
        }
    }

    @Test("cancelling the consuming task ends the stream and closes the connection early")
    func cancellationClosesTheStream() async throws {
        let slow = ModelProfile(timeToFirstTokenMs: 10, outputTokensPerSecond: 100)
        try await withSimulator(configure: { $0.defaultModel = slow }) { _, client in
            let events = try await client.converseStream(modelId: Self.sonnet, request: prompt(maxTokens: 1_000, forcedOutput: 600))
            let consumer = Task {
                var count = 0
                for try await event in events where event.isContent { count += 1 }
                return count
            }
            try await Task.sleep(for: .milliseconds(300))
            let started = ContinuousClock.now
            consumer.cancel()
            let count = try? await consumer.value
            // 600 tokens at 100/s would take 6 s; cancelled, the loop ends at once.
            #expect(ContinuousClock.now - started < .seconds(2))
            #expect((count ?? 0) < 32)
        }
    }
}
