/// Who wrote a message. Unknown values are kept as they came. (Codable as a plain string, through the
/// standard library's `RawRepresentable` conformance.)
public struct ConversationRole: RawRepresentable, Sendable, Hashable, Codable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    /// The caller.
    public static let user: Self = "user"
    /// The model.
    public static let assistant: Self = "assistant"
}

/// One block of message or system content.
///
/// `text` and `cachePoint` are modelled; every other block type (image, document, toolUse, toolResult,
/// guardContent, reasoningContent...) round-trips unchanged as ``other(type:value:)``.
public enum ContentBlock: Sendable, Hashable, Codable {
    /// `{"text": "..."}`.
    case text(String)
    /// `{"cachePoint": {"type": "default"}}`: everything before it may be served from the prompt cache.
    case cachePoint
    /// Any other single-key block, kept as JSON.
    case other(type: String, value: JSONValue)

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        if let text = try container.decodeIfPresent(String.self, forKey: Key("text")) {
            self = .text(text)
        } else if container.contains(Key("cachePoint")) {
            self = .cachePoint
        } else if let key = container.allKeys.first {
            self = .other(type: key.stringValue, value: try container.decode(JSONValue.self, forKey: key))
        } else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "empty content block"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        switch self {
        case .text(let text): try container.encode(text, forKey: Key("text"))
        case .cachePoint: try container.encode(["type": "default"], forKey: Key("cachePoint"))
        case .other(let type, let value): try container.encode(value, forKey: Key(type))
        }
    }

    /// The text of a `.text` block, else nil.
    public var text: String? {
        if case .text(let text) = self { return text }
        return nil
    }
}

/// A message in a conversation.
public struct Message: Sendable, Hashable, Codable {
    /// Who wrote it.
    public var role: ConversationRole
    /// Its blocks.
    public var content: [ContentBlock]

    /// Creates a message.
    public init(role: ConversationRole, content: [ContentBlock]) {
        self.role = role
        self.content = content
    }

    /// A user message with one text block.
    public static func user(_ text: String) -> Message { Message(role: .user, content: [.text(text)]) }
    /// An assistant message with one text block.
    public static func assistant(_ text: String) -> Message { Message(role: .assistant, content: [.text(text)]) }
}

/// `inferenceConfig`.
public struct InferenceConfiguration: Sendable, Hashable, Codable {
    /// Maximum output tokens. Bedrock holds `input + maxTokens` of quota at request start, so set it tight.
    public var maxTokens: Int?
    /// Sampling temperature.
    public var temperature: Double?
    /// Nucleus sampling.
    public var topP: Double?
    /// Sequences that end generation.
    public var stopSequences: [String]?

    /// Creates a configuration.
    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil, stopSequences: [String]? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.stopSequences = stopSequences
    }
}

/// The body of `POST /model/{modelId}/converse`.
public struct ConverseRequest: Sendable, Hashable, Codable {
    /// The conversation, starting with a user message.
    public var messages: [Message]
    /// System prompts.
    public var system: [ContentBlock]?
    /// Inference parameters.
    public var inferenceConfig: InferenceConfiguration?
    /// Model-specific fields passed through.
    public var additionalModelRequestFields: JSONValue?

    /// Creates a request.
    public init(
        messages: [Message],
        system: [ContentBlock]? = nil,
        inferenceConfig: InferenceConfiguration? = nil,
        additionalModelRequestFields: JSONValue? = nil
    ) {
        self.messages = messages
        self.system = system
        self.inferenceConfig = inferenceConfig
        self.additionalModelRequestFields = additionalModelRequestFields
    }
}

/// Why generation stopped. Unknown values are kept as they came.
public struct StopReason: RawRepresentable, Sendable, Hashable, Codable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public static let endTurn: Self = "end_turn"
    public static let toolUse: Self = "tool_use"
    public static let maxTokens: Self = "max_tokens"
    public static let stopSequence: Self = "stop_sequence"
    public static let guardrailIntervened: Self = "guardrail_intervened"
    public static let contentFiltered: Self = "content_filtered"
}

/// Token counts of one call, as Bedrock reports them.
///
/// What Bedrock charges against TPM at the end of a call is
/// `inputTokens + cacheWriteInputTokens + outputTokens x burndown`; cache reads are not charged.
public struct TokenUsage: Sendable, Hashable, Codable {
    /// Uncached input tokens.
    public var inputTokens: Int
    /// Output tokens generated.
    public var outputTokens: Int
    /// All tokens (input, cache read, cache write, output).
    public var totalTokens: Int
    /// Input tokens read from the prompt cache (0 when absent).
    public var cacheReadInputTokens: Int
    /// Input tokens written to the prompt cache (0 when absent).
    public var cacheWriteInputTokens: Int

    /// Creates usage.
    public init(inputTokens: Int, outputTokens: Int, totalTokens: Int? = nil, cacheReadInputTokens: Int = 0, cacheWriteInputTokens: Int = 0) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.totalTokens = totalTokens ?? inputTokens + outputTokens + cacheReadInputTokens + cacheWriteInputTokens
        self.cacheReadInputTokens = cacheReadInputTokens
        self.cacheWriteInputTokens = cacheWriteInputTokens
    }

    private enum CodingKeys: String, CodingKey {
        case inputTokens, outputTokens, totalTokens, cacheReadInputTokens, cacheWriteInputTokens
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inputTokens = try c.decode(Int.self, forKey: .inputTokens)
        outputTokens = try c.decode(Int.self, forKey: .outputTokens)
        cacheReadInputTokens = try c.decodeIfPresent(Int.self, forKey: .cacheReadInputTokens) ?? 0
        cacheWriteInputTokens = try c.decodeIfPresent(Int.self, forKey: .cacheWriteInputTokens) ?? 0
        totalTokens = try c.decodeIfPresent(Int.self, forKey: .totalTokens)
            ?? inputTokens + outputTokens + cacheReadInputTokens + cacheWriteInputTokens
    }
}

/// `metrics` of a Converse response.
public struct ConverseMetrics: Sendable, Hashable, Codable {
    /// Bedrock's own latency for the call, in milliseconds.
    public var latencyMs: Int
    /// Creates metrics.
    public init(latencyMs: Int) { self.latencyMs = latencyMs }
}

/// The body of a successful Converse answer.
public struct ConverseResponse: Sendable, Hashable, Codable {
    /// `output`: the assistant's message.
    public struct Output: Sendable, Hashable, Codable {
        /// The generated message.
        public var message: Message?
        /// Creates an output.
        public init(message: Message?) { self.message = message }
    }

    /// The generated output.
    public var output: Output
    /// Why generation stopped.
    public var stopReason: StopReason
    /// Token counts (what to settle in the ledger).
    public var usage: TokenUsage
    /// Bedrock's latency.
    public var metrics: ConverseMetrics?
    /// Model-specific fields passed through.
    public var additionalModelResponseFields: JSONValue?

    /// Creates a response.
    public init(output: Output, stopReason: StopReason, usage: TokenUsage, metrics: ConverseMetrics? = nil,
                additionalModelResponseFields: JSONValue? = nil) {
        self.output = output
        self.stopReason = stopReason
        self.usage = usage
        self.metrics = metrics
        self.additionalModelResponseFields = additionalModelResponseFields
    }

    /// The concatenated text blocks of the output message.
    public var text: String {
        (output.message?.content ?? []).compactMap(\.text).joined()
    }
}

/// The body of `POST /model/{modelId}/count-tokens`: `{"input": {"converse": {...}}}` or
/// `{"input": {"invokeModel": {"body": "..."}}}`.
public struct CountTokensRequest: Sendable, Hashable, Codable {
    /// The input to count.
    public enum Input: Sendable, Hashable, Codable {
        /// Messages and system prompts as for Converse.
        case converse(messages: [Message], system: [ContentBlock]?)
        /// An InvokeModel body (a JSON string in the model's native format).
        case invokeModel(body: String)

        private enum CodingKeys: String, CodingKey { case converse, invokeModel }
        private struct ConverseInput: Codable { var messages: [Message]; var system: [ContentBlock]? }
        private struct InvokeModelInput: Codable { var body: String }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if let converse = try c.decodeIfPresent(ConverseInput.self, forKey: .converse) {
                self = .converse(messages: converse.messages, system: converse.system)
            } else {
                self = .invokeModel(body: try c.decode(InvokeModelInput.self, forKey: .invokeModel).body)
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case .converse(let messages, let system):
                try c.encode(ConverseInput(messages: messages, system: system), forKey: .converse)
            case .invokeModel(let body):
                try c.encode(InvokeModelInput(body: body), forKey: .invokeModel)
            }
        }
    }

    /// The input to count.
    public var input: Input

    /// Creates a request.
    public init(input: Input) { self.input = input }

    /// Counts what a Converse request would send (its messages and system prompts).
    public init(converse request: ConverseRequest) {
        input = .converse(messages: request.messages, system: request.system)
    }
}

/// The answer of CountTokens.
public struct CountTokensResponse: Sendable, Hashable, Codable {
    /// Exact input tokens for the model.
    public var inputTokens: Int
    /// Creates a response.
    public init(inputTokens: Int) { self.inputTokens = inputTokens }
}
