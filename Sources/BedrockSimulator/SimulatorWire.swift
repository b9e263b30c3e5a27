import Foundation

/// The parts of the Converse / CountTokens request bodies the simulator reads. Parsed independently of the
/// client's types so that wire-shape mistakes on either side show up in tests.
struct ConverseRequestBody: Decodable {
    struct Block: Decodable {
        var text: String?
        var cachePoint: CachePoint?
        /// Any other block (image, document, toolUse, toolResult...) is accepted and counted as 64 characters
        /// (16 tokens at the default rate) per key.
        var otherCharacters: Int

        struct CachePoint: Decodable { var type: String? }

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: AnyKey.self)
            text = try container.decodeIfPresent(String.self, forKey: AnyKey(stringValue: "text"))
            cachePoint = try container.decodeIfPresent(CachePoint.self, forKey: AnyKey(stringValue: "cachePoint"))
            otherCharacters = container.allKeys.filter { $0.stringValue != "text" && $0.stringValue != "cachePoint" }.count * 64
        }

        init(text: String) {
            self.text = text
            cachePoint = nil
            otherCharacters = 0
        }
    }

    struct Message: Decodable {
        var role: String
        var content: [Block]
    }

    struct InferenceConfig: Decodable {
        var maxTokens: Int?
        var temperature: Double?
        var topP: Double?
        var stopSequences: [String]?
    }

    var messages: [Message]
    var system: [Block]?
    var inferenceConfig: InferenceConfig?
}

/// An InvokeModel body in a model's native format, read as the equivalent Converse request: Anthropic's
/// Messages API (`messages` with string or `[{"type": "text", "text": ...}]` content, `system`, `max_tokens`),
/// or a single `prompt` / `inputText` string (Llama, Mistral, Titan) with `max_gen_len`, `max_tokens` or
/// `textGenerationConfig.maxTokenCount`.
struct InvokeModelRequestBody: Decodable {
    /// String content, or blocks of which the text ones count (others as 64 characters each).
    struct Content: Decodable {
        var blocks: [ConverseRequestBody.Block]
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                blocks = [.init(text: text)]
            } else {
                blocks = try container.decode([NativeBlock].self).map { $0.text.map(ConverseRequestBody.Block.init(text:)) ?? .init(text: String(repeating: " ", count: 64)) }
            }
        }
    }
    struct NativeBlock: Decodable { var text: String? }
    struct Message: Decodable {
        var role: String
        var content: Content
    }
    struct TextGenerationConfig: Decodable { var maxTokenCount: Int? }

    var messages: [Message]?
    var system: Content?
    var prompt: String?
    var inputText: String?
    var max_tokens: Int?
    var max_gen_len: Int?
    var textGenerationConfig: TextGenerationConfig?

    /// The same request in Converse's terms.
    var converse: ConverseRequestBody {
        let messages = self.messages?.map { ConverseRequestBody.Message(role: $0.role, content: $0.content.blocks) }
            ?? (prompt ?? inputText).map { [ConverseRequestBody.Message(role: "user", content: [.init(text: $0)])] }
            ?? []
        let maxTokens = max_tokens ?? max_gen_len ?? textGenerationConfig?.maxTokenCount
        return ConverseRequestBody(
            messages: messages, system: system?.blocks,
            inferenceConfig: ConverseRequestBody.InferenceConfig(maxTokens: maxTokens))
    }
}

/// `{"input": {"converse": {...}}}` of CountTokens.
struct CountTokensRequestBody: Decodable {
    struct Input: Decodable {
        var converse: ConverseRequestBody?
        var invokeModel: InvokeModelInput?
    }
    struct InvokeModelInput: Decodable { var body: String }
    var input: Input
}

/// How the request's input divides into cached and uncached tokens.
struct InputTokens: Equatable {
    /// Input tokens after the last cache point (or all, without one).
    var uncached: Int
    /// Tokens before the last cache point.
    var cachedPrefix: Int
    /// Identity of the cached prefix (nil without a cache point).
    var prefixKey: String?
    var total: Int { uncached + cachedPrefix }
}

/// Counts input tokens as characters / charactersPerToken, rounded up; the same rule for Converse and
/// CountTokens, so a client that calls CountTokens first estimates exactly.
struct TokenCounter {
    let charactersPerToken: Double

    func tokens(characters: Int) -> Int {
        characters == 0 ? 0 : Int((Double(characters) / charactersPerToken).rounded(.up))
    }

    func count(_ body: ConverseRequestBody) -> InputTokens {
        var characters = 0
        var prefixCharacters = 0
        var prefixText = ""
        var text = ""
        func visit(_ block: ConverseRequestBody.Block) {
            if let blockText = block.text {
                characters += blockText.count
                text += blockText
            }
            characters += block.otherCharacters
            if block.cachePoint != nil {
                prefixCharacters = characters
                prefixText = text
            }
        }
        body.system?.forEach(visit)
        for message in body.messages {
            characters += 4  // role framing
            message.content.forEach(visit)
        }
        let total = max(1, tokens(characters: characters))
        let prefix = min(total, tokens(characters: prefixCharacters))
        return InputTokens(
            uncached: total - prefix,
            cachedPrefix: prefix,
            prefixKey: prefixCharacters > 0 ? "\(prefixCharacters):\(SeededRandom.fnv1a(prefixText))" : nil
        )
    }
}

/// The simulator's error answers: status, `x-amzn-ErrorType`, message, exactly as bedrock-runtime sends them.
struct SimulatedError: Error, Equatable {
    var status: Int
    var errorType: String
    var message: String

    static func throttledRequests() -> Self {
        Self(status: 429, errorType: "ThrottlingException", message: "Too many requests, please wait before trying again.")
    }
    static func throttledTokens() -> Self {
        Self(status: 429, errorType: "ThrottlingException", message: "Too many tokens, please wait before trying again.")
    }
    static func throttledDaily() -> Self {
        Self(status: 429, errorType: "ThrottlingException",
             message: "Too many tokens per day, please wait before trying again.")
    }
    static func overloaded(_ modelId: String) -> Self {
        Self(status: 429, errorType: "ThrottlingException",
             message: "Model \(modelId) is currently overloaded. Please try again later.")
    }
    static func serviceUnavailable() -> Self {
        Self(status: 503, errorType: "ServiceUnavailableException",
             message: "Service temporarily unavailable, please try again.")
    }
    static func tooManyConnections() -> Self {
        Self(status: 503, errorType: "ServiceUnavailableException",
             message: "Too many connections, please wait before trying again.")
    }
    static func validation(_ message: String) -> Self {
        Self(status: 400, errorType: "ValidationException", message: message)
    }
    static func modelNotFound() -> Self {
        Self(status: 404, errorType: "ResourceNotFoundException", message: "The provided model identifier is invalid.")
    }
    static func unknownOperation() -> Self {
        Self(status: 404, errorType: "UnknownOperationException", message: "Unknown operation.")
    }
    static func missingAuthentication() -> Self {
        Self(status: 403, errorType: "MissingAuthenticationTokenException", message: "Missing Authentication Token")
    }

    /// The header value, with the coral namespace suffix real answers carry.
    var errorTypeHeader: String { "\(errorType):http://internal.amazon.com/coral/com.amazon.bedrock/" }
}
