import BedrockErrors
import BedrockRuntime
import Foundation
import QuotaKeeper

/// Which Bedrock Runtime operation the apps call (`--api`).
enum FleetAPI: String, Codable, Sendable, CaseIterable {
    case converse
    case converseStream = "converse-stream"
    case invoke
    case invokeStream = "invoke-stream"

    /// Whether the answer is an event stream (the coordinated mode then uses the streaming call path).
    var isStreaming: Bool { self == .converseStream || self == .invokeStream }
}

/// One app's request, sent through the chosen API; every Bedrock error it meets is recorded in `observations`.
struct FleetBedrockCalls: Sendable {
    let api: FleetAPI
    let bedrock: BedrockRuntimeClient
    let converseRequest: ConverseRequest
    /// The same request as an Anthropic Messages API body, for InvokeModel.
    let invokeBody: Data
    let observations: ClientObservations

    init(api: FleetAPI, bedrock: BedrockRuntimeClient, prompt: String, maxTokens: Int, observations: ClientObservations) {
        self.api = api
        self.bedrock = bedrock
        self.observations = observations
        converseRequest = ConverseRequest(messages: [.user(prompt)], inferenceConfig: InferenceConfiguration(maxTokens: maxTokens))
        struct Body: Encodable {
            struct Message: Encodable { var role = "user"; var content: String }
            var anthropic_version = "bedrock-2023-05-31"
            var max_tokens: Int
            var messages: [Message]
        }
        invokeBody = (try? JSONEncoder().encode(Body(max_tokens: maxTokens, messages: [.init(content: prompt)]))) ?? Data()
    }

    /// Calls `model` and returns the usage Bedrock reported (a stream is read to its end).
    func whole(_ model: String) async throws -> BedrockRuntime.TokenUsage {
        try await observing {
            switch api {
            case .converse:
                return try await bedrock.converse(modelId: model, request: converseRequest).usage
            case .invoke:
                let usage = try await bedrock.invokeModel(modelId: model, body: invokeBody).usage
                return usage ?? TokenUsage(inputTokens: 0, outputTokens: 0)
            case .converseStream, .invokeStream:
                var usage: QuotaKeeper.TokenUsage?
                for try await reading in try await stream(model) where reading.usage != nil { usage = reading.usage }
                return usage.map {
                    BedrockRuntime.TokenUsage(inputTokens: $0.inputTokens, outputTokens: $0.outputTokens,
                                              cacheReadInputTokens: $0.cacheReadInputTokens, cacheWriteInputTokens: $0.cacheWriteInputTokens)
                } ?? TokenUsage(inputTokens: 0, outputTokens: 0)
            }
        }
    }

    /// Opens a streamed call on `model`; its events as the call path reads them.
    func stream(_ model: String) async throws -> AsyncThrowingStream<StreamEventReading, any Error> {
        switch api {
        case .converseStream:
            return relay(try await observing { try await bedrock.converseStream(modelId: model, request: converseRequest) }) { event in
                StreamEventReading(isContent: event.isContent, outputTokens: event.estimatedOutputTokens, usage: event.usage.map(Self.usage))
            }
        default:
            return relay(try await observing { try await bedrock.invokeModelWithResponseStream(modelId: model, body: invokeBody) }) { chunk in
                let type = (try? JSONSerialization.jsonObject(with: chunk.bytes) as? [String: Any])?["type"] as? String
                return StreamEventReading(
                    isContent: type == "content_block_delta", outputTokens: chunk.estimatedOutputTokens,
                    usage: chunk.invocationMetrics.map { Self.usage($0.usage) })
            }
        }
    }

    static func usage(_ usage: BedrockRuntime.TokenUsage) -> QuotaKeeper.TokenUsage {
        QuotaKeeper.TokenUsage(inputTokens: usage.inputTokens, outputTokens: usage.outputTokens,
                               cacheReadInputTokens: usage.cacheReadInputTokens, cacheWriteInputTokens: usage.cacheWriteInputTokens)
    }

    private func observing<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as BedrockError {
            observations.saw(error.kind.rawValue)
            throw error
        }
    }

    /// `source`'s events read by `reading`; ending the result early cancels the source.
    private func relay<Event: Sendable>(
        _ source: AsyncThrowingStream<Event, any Error>, _ reading: @escaping @Sendable (Event) -> StreamEventReading
    ) -> AsyncThrowingStream<StreamEventReading, any Error> {
        let (readings, continuation) = AsyncThrowingStream<StreamEventReading, any Error>.makeStream()
        let observations = self.observations
        let pump = Task {
            do {
                for try await event in source { continuation.yield(reading(event)) }
                continuation.finish()
            } catch {
                if let error = error as? BedrockError { observations.saw(error.kind.rawValue) }
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in pump.cancel() }
        return readings
    }
}
