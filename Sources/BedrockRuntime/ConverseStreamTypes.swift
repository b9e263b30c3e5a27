import Foundation

/// One event of a ConverseStream answer, in the order Bedrock sends them: `messageStart`, then per content
/// block `contentBlockStart` (tool use only), `contentBlockDelta`s and `contentBlockStop`, then
/// `messageStop` and finally `metadata` with the usage to settle.
///
/// Exception events (`throttlingException`, `serviceUnavailableException`, ...) are not events: the stream
/// throws them as a classified `BedrockError`.
public enum ConverseStreamEvent: Sendable, Hashable {
    /// The assistant's message begins.
    case messageStart(role: ConversationRole)
    /// A content block begins (Bedrock sends this for tool use; text blocks start with their first delta).
    case contentBlockStart(index: Int, start: ContentBlockStart)
    /// A piece of a content block.
    case contentBlockDelta(index: Int, delta: ContentBlockDelta)
    /// A content block is complete.
    case contentBlockStop(index: Int)
    /// Generation stopped.
    case messageStop(stopReason: StopReason, additionalModelResponseFields: JSONValue?)
    /// The last event: token usage (what to settle) and Bedrock's latency.
    case metadata(ConverseStreamMetadata)
    /// An event type this client does not know (kept so that new event types do not break a stream).
    case unknown(eventType: String)

    /// Whether this event carries generated content (a delta or a block start).
    public var isContent: Bool {
        switch self {
        case .contentBlockStart, .contentBlockDelta: true
        default: false
        }
    }

    /// The usage of a `metadata` event.
    public var usage: TokenUsage? {
        if case .metadata(let metadata) = self { return metadata.usage }
        return nil
    }

    /// Output tokens this event carries, estimated on the high side from its bytes (one token per 3 bytes of
    /// text or tool input, rounded up): what a caller can count when a stream breaks before `metadata`.
    public var estimatedOutputTokens: Int {
        guard case .contentBlockDelta(_, let delta) = self else { return 0 }
        let bytes: Int
        switch delta {
        case .text(let text): bytes = text.utf8.count
        case .toolUseInput(let input): bytes = input.utf8.count
        case .other(_, let value): bytes = (try? JSONEncoder().encode(value).count) ?? 0
        }
        return (bytes + 2) / 3
    }
}

/// How a content block starts.
public enum ContentBlockStart: Sendable, Hashable {
    /// A tool call: its id and the tool's name (its input follows as ``ContentBlockDelta/toolUseInput(_:)``).
    case toolUse(toolUseId: String, name: String)
    /// Any other start, kept as JSON.
    case other(type: String, value: JSONValue)
}

/// A piece of a content block.
public enum ContentBlockDelta: Sendable, Hashable {
    /// Generated text.
    case text(String)
    /// A piece of a tool call's input (JSON text, to be concatenated).
    case toolUseInput(String)
    /// Any other delta (reasoning content, citations...), kept as JSON.
    case other(type: String, value: JSONValue)
}

/// The `metadata` event.
public struct ConverseStreamMetadata: Sendable, Hashable, Codable {
    /// Token counts of the whole call.
    public var usage: TokenUsage
    /// Bedrock's latency.
    public var metrics: ConverseMetrics?
    /// Creates metadata.
    public init(usage: TokenUsage, metrics: ConverseMetrics? = nil) {
        self.usage = usage
        self.metrics = metrics
    }
}

/// The JSON payloads of the event types, as bedrock-runtime's model defines them.
enum ConverseStreamPayload {
    struct MessageStart: Codable { var role: ConversationRole }
    struct ContentBlockStart: Codable {
        var contentBlockIndex: Int
        var start: [String: JSONValue]
    }
    struct ContentBlockDelta: Codable {
        var contentBlockIndex: Int
        var delta: [String: JSONValue]
    }
    struct ContentBlockStop: Codable { var contentBlockIndex: Int }
    struct MessageStop: Codable {
        var stopReason: StopReason
        var additionalModelResponseFields: JSONValue?
    }

    /// The event for one `:event-type` and JSON payload.
    static func event(type: String, payload: Data) throws -> ConverseStreamEvent {
        let decoder = JSONDecoder()
        switch type {
        case "messageStart":
            return .messageStart(role: try decoder.decode(MessageStart.self, from: payload).role)
        case "contentBlockStart":
            let body = try decoder.decode(ContentBlockStart.self, from: payload)
            if case .object(let toolUse)? = body.start["toolUse"], case .string(let id)? = toolUse["toolUseId"],
               case .string(let name)? = toolUse["name"] {
                return .contentBlockStart(index: body.contentBlockIndex, start: .toolUse(toolUseId: id, name: name))
            }
            let (key, value) = body.start.first ?? ("", .null)
            return .contentBlockStart(index: body.contentBlockIndex, start: .other(type: key, value: value))
        case "contentBlockDelta":
            let body = try decoder.decode(ContentBlockDelta.self, from: payload)
            if case .string(let text)? = body.delta["text"] {
                return .contentBlockDelta(index: body.contentBlockIndex, delta: .text(text))
            }
            if case .object(let toolUse)? = body.delta["toolUse"], case .string(let input)? = toolUse["input"] {
                return .contentBlockDelta(index: body.contentBlockIndex, delta: .toolUseInput(input))
            }
            let (key, value) = body.delta.first ?? ("", .null)
            return .contentBlockDelta(index: body.contentBlockIndex, delta: .other(type: key, value: value))
        case "contentBlockStop":
            return .contentBlockStop(index: try decoder.decode(ContentBlockStop.self, from: payload).contentBlockIndex)
        case "messageStop":
            let body = try decoder.decode(MessageStop.self, from: payload)
            return .messageStop(stopReason: body.stopReason, additionalModelResponseFields: body.additionalModelResponseFields)
        case "metadata":
            return .metadata(try decoder.decode(ConverseStreamMetadata.self, from: payload))
        default:
            return .unknown(eventType: type)
        }
    }
}
