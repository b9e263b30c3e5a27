import Foundation

/// The answer of InvokeModel: the model's own JSON body, and the usage Bedrock reports in headers.
public struct InvokeModelResponse: Sendable, Hashable {
    /// The response body in the model's native format (for Anthropic models, a Messages API response).
    public var body: Data
    /// The body's content type.
    public var contentType: String?
    /// Token counts from `x-amzn-bedrock-input-token-count`, `-output-token-count` and the cache headers
    /// (nil if Bedrock sent none).
    public var usage: TokenUsage?
    /// `x-amzn-bedrock-invocation-latency`, in milliseconds.
    public var invocationLatencyMs: Int?

    /// Creates a response.
    public init(body: Data, contentType: String? = nil, usage: TokenUsage? = nil, invocationLatencyMs: Int? = nil) {
        self.body = body
        self.contentType = contentType
        self.usage = usage
        self.invocationLatencyMs = invocationLatencyMs
    }
}

/// One chunk of an InvokeModelWithResponseStream answer: a piece of the model's native streaming format.
public struct InvokeModelChunk: Sendable, Hashable {
    /// The chunk's bytes (for Anthropic models, one Messages API stream event as JSON).
    public var bytes: Data
    /// `amazon-bedrock-invocationMetrics` of the final chunk (nil on every other chunk).
    public var invocationMetrics: InvocationMetrics?

    /// Creates a chunk.
    public init(bytes: Data, invocationMetrics: InvocationMetrics? = nil) {
        self.bytes = bytes
        self.invocationMetrics = invocationMetrics
    }

    /// Output tokens this chunk carries, estimated on the high side from its bytes (one per 3 bytes), for a
    /// caller counting a stream that breaks before its final chunk.
    public var estimatedOutputTokens: Int { invocationMetrics == nil ? (bytes.count + 2) / 3 : 0 }
}

/// `amazon-bedrock-invocationMetrics`, which Bedrock adds to the final chunk of a response stream.
public struct InvocationMetrics: Sendable, Hashable, Codable {
    public var inputTokenCount: Int
    public var outputTokenCount: Int
    /// Milliseconds from request to last byte.
    public var invocationLatency: Int?
    /// Milliseconds from request to first byte.
    public var firstByteLatency: Int?
    public var cacheReadInputTokenCount: Int?
    public var cacheWriteInputTokenCount: Int?

    /// Creates metrics.
    public init(inputTokenCount: Int, outputTokenCount: Int, invocationLatency: Int? = nil, firstByteLatency: Int? = nil,
                cacheReadInputTokenCount: Int? = nil, cacheWriteInputTokenCount: Int? = nil) {
        self.inputTokenCount = inputTokenCount
        self.outputTokenCount = outputTokenCount
        self.invocationLatency = invocationLatency
        self.firstByteLatency = firstByteLatency
        self.cacheReadInputTokenCount = cacheReadInputTokenCount
        self.cacheWriteInputTokenCount = cacheWriteInputTokenCount
    }

    /// The same counts as ``TokenUsage``.
    public var usage: TokenUsage {
        TokenUsage(inputTokens: inputTokenCount, outputTokens: outputTokenCount,
                   cacheReadInputTokens: cacheReadInputTokenCount ?? 0, cacheWriteInputTokens: cacheWriteInputTokenCount ?? 0)
    }
}

/// The wire shapes of a response stream's chunk.
enum InvokeModelStreamPayload {
    /// The event payload: `{"bytes": "<base64>"}`.
    struct Chunk: Codable { var bytes: Data }
    /// The part of a decoded chunk that carries the final metrics.
    struct MetricsCarrier: Decodable {
        var metrics: InvocationMetrics?
        enum CodingKeys: String, CodingKey { case metrics = "amazon-bedrock-invocationMetrics" }
    }

    static func chunk(payload: Data) throws -> InvokeModelChunk {
        let bytes = try JSONDecoder().decode(Chunk.self, from: payload).bytes
        let metrics = (try? JSONDecoder().decode(MetricsCarrier.self, from: bytes))?.metrics
        return InvokeModelChunk(bytes: bytes, invocationMetrics: metrics)
    }
}
