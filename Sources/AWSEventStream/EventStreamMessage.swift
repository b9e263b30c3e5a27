import Foundation

/// One message of the AWS event-stream binary framing (`application/vnd.amazon.eventstream`): headers and a
/// payload. Bedrock Runtime's streaming answers (ConverseStream, InvokeModelWithResponseStream) are sequences
/// of these; ``EventStreamEncoder`` and ``EventStreamDecoder`` turn them into bytes and back.
public struct EventStreamMessage: Sendable, Hashable {
    /// The headers in wire order (names are unique within a message).
    public var headers: [EventStreamHeader]
    /// The payload (for Bedrock, a JSON document).
    public var payload: Data

    /// Creates a message.
    public init(headers: [EventStreamHeader] = [], payload: Data = Data()) {
        self.headers = headers
        self.payload = payload
    }

    /// The value of the header called `name`, if present.
    public subscript(header name: String) -> EventStreamHeaderValue? {
        headers.first { $0.name == name }?.value
    }

    /// The string value of the header called `name` (nil when absent or not a string).
    public func string(header name: String) -> String? {
        if case .string(let value)? = self[header: name] { return value }
        return nil
    }

    /// `:message-type`: `event`, `exception` or `error`.
    public var messageType: String? { string(header: ":message-type") }
    /// `:event-type` of an event message (e.g. `contentBlockDelta`, `chunk`).
    public var eventType: String? { string(header: ":event-type") }
    /// `:exception-type` of an exception message (e.g. `throttlingException`).
    public var exceptionType: String? { string(header: ":exception-type") }

    /// A Bedrock event message: `:message-type` event, `:event-type` and `:content-type` application/json.
    public static func event(_ type: String, payload: Data) -> EventStreamMessage {
        EventStreamMessage(headers: [
            EventStreamHeader(":event-type", .string(type)),
            EventStreamHeader(":content-type", .string("application/json")),
            EventStreamHeader(":message-type", .string("event")),
        ], payload: payload)
    }

    /// A Bedrock exception message: `:message-type` exception, `:exception-type`, payload `{"message": ...}`.
    public static func exception(_ type: String, payload: Data) -> EventStreamMessage {
        EventStreamMessage(headers: [
            EventStreamHeader(":exception-type", .string(type)),
            EventStreamHeader(":content-type", .string("application/json")),
            EventStreamHeader(":message-type", .string("exception")),
        ], payload: payload)
    }
}

/// One header: a name (1-255 bytes of UTF-8) and a typed value.
public struct EventStreamHeader: Sendable, Hashable {
    /// The name.
    public var name: String
    /// The value.
    public var value: EventStreamHeaderValue

    /// Creates a header.
    public init(_ name: String, _ value: EventStreamHeaderValue) {
        self.name = name
        self.value = value
    }
}

/// A header value: the ten wire types of the framing.
public enum EventStreamHeaderValue: Sendable, Hashable {
    /// Types 0 (true) and 1 (false): no value bytes.
    case bool(Bool)
    /// Type 2: one signed byte.
    case byte(Int8)
    /// Type 3: a signed 16-bit big-endian integer.
    case short(Int16)
    /// Type 4: a signed 32-bit big-endian integer.
    case integer(Int32)
    /// Type 5: a signed 64-bit big-endian integer.
    case long(Int64)
    /// Type 6: up to 65,535 bytes, with a 16-bit length.
    case byteArray(Data)
    /// Type 7: up to 65,535 bytes of UTF-8, with a 16-bit length.
    case string(String)
    /// Type 8: milliseconds since the Unix epoch, signed 64-bit.
    case timestamp(milliseconds: Int64)
    /// Type 9: 16 bytes.
    case uuid(UUID)

    /// The wire type code (0-9).
    public var typeCode: UInt8 {
        switch self {
        case .bool(let value): value ? 0 : 1
        case .byte: 2
        case .short: 3
        case .integer: 4
        case .long: 5
        case .byteArray: 6
        case .string: 7
        case .timestamp: 8
        case .uuid: 9
        }
    }
}
