/// One RESP2 reply, copied out of hiredis's reply object (which is freed at once).
package enum RedisReply: Sendable, Hashable {
    /// A simple string such as `OK` or `PONG`.
    case status(String)
    /// An error reply, kept as a value only inside arrays and pipelines (a top-level one is thrown).
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A binary-safe bulk string.
    case bulkString([UInt8])
    /// The nil bulk string or nil array.
    case null
    /// An array reply, possibly nested.
    case array([RedisReply])

    /// The text of a status, bulk string or error reply (bulk strings decoded as UTF-8, lossily).
    package var string: String? {
        switch self {
        case .status(let text), .error(let text): return text
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// The integer value of an integer reply, or of a bulk/status string holding a decimal integer.
    package var integer: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulkString, .status: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    /// The numeric value of an integer reply or of a bulk/status string holding a number.
    package var double: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .bulkString, .status: return string.flatMap { Double($0) }
        default: return nil
        }
    }

    /// The elements of an array reply.
    package var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Whether this is the nil reply.
    package var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension RedisReply: CustomStringConvertible {
    package var description: String {
        switch self {
        case .status(let text): return "+\(text)"
        case .error(let text): return "-\(text)"
        case .integer(let value): return ":\(value)"
        case .bulkString: return "\"\(string ?? "")\""
        case .null: return "(nil)"
        case .array(let elements): return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
