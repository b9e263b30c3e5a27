/// Why bytes are not a valid event stream. Every failure of ``EventStreamDecoder`` (and the few of
/// ``EventStreamEncoder``) is one of these; after a decoding failure the stream's framing is lost and the
/// decoder keeps failing with the same error.
public struct EventStreamError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The CRC32 of the 8-byte prelude does not match its checksum field.
        public static let preludeChecksumMismatch = Code("preludeChecksumMismatch")
        /// The CRC32 of the whole message does not match its trailing checksum.
        public static let messageChecksumMismatch = Code("messageChecksumMismatch")
        /// The prelude's lengths are impossible (total below 16, headers beyond the message) or above the limits.
        public static let invalidLength = Code("invalidLength")
        /// A header is malformed: unknown type, value past the headers, empty or duplicate name, bad UTF-8.
        public static let invalidHeader = Code("invalidHeader")
        /// The bytes ended in the middle of a message.
        public static let truncated = Code("truncated")
        public var description: String { name }
    }

    /// What kind of failure.
    public var code: Code
    /// What was wrong, in words (never quotes payload bytes).
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "EventStreamError.\(code): \(message)" }
}
