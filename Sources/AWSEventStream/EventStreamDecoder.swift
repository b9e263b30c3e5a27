import Foundation

/// Reads ``EventStreamMessage``s from bytes that arrive in chunks of any size (a message may span many
/// chunks, a chunk may hold many messages).
///
/// ```swift
/// var decoder = EventStreamDecoder()
/// for try await chunk in body {
///     decoder.append(chunk)
///     while let message = try decoder.next() { handle(message) }
/// }
/// try decoder.finish()   // the body ended: anything left over is a truncated message
/// ```
///
/// The prelude's CRC is checked before its lengths are trusted, the message CRC before any header is read;
/// lengths are bounded by ``EventStreamFraming``. Every failure is an ``EventStreamError``; after one the
/// framing is lost and every later call throws the same error. Memory is bounded by one message.
public struct EventStreamDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    private var failure: EventStreamError?

    /// Creates a decoder.
    public init() {}

    /// Bytes received but not yet returned as messages.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Adds received bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0, start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole message, or nil until more bytes arrive.
    /// - Throws: ``EventStreamError`` for a corrupted or malformed message.
    public mutating func next() throws(EventStreamError) -> EventStreamMessage? {
        if let failure { throw failure }
        do {
            return try decodeNext()
        } catch {
            failure = error
            throw error
        }
    }

    /// Declares the end of the bytes.
    /// - Throws: ``EventStreamError/Code/truncated`` if part of a message is left over (or the earlier failure).
    public func finish() throws(EventStreamError) {
        if let failure { throw failure }
        guard bufferedByteCount == 0 else {
            throw EventStreamError(.truncated, "the stream ended \(bufferedByteCount) bytes into a message")
        }
    }

    private mutating func decodeNext() throws(EventStreamError) -> EventStreamMessage? {
        guard bufferedByteCount >= EventStreamFraming.preludeLength else { return nil }
        let total = Int(readUInt32(at: start))
        let headersLength = Int(readUInt32(at: start + 4))
        let preludeCRC = readUInt32(at: start + 8)
        guard CRC32.checksum(buffer[start..<start + 8]) == preludeCRC else {
            throw EventStreamError(.preludeChecksumMismatch, "the prelude's CRC32 does not match")
        }
        guard total >= EventStreamFraming.minimumMessageLength else {
            throw EventStreamError(.invalidLength, "a message of \(total) bytes is shorter than the 16-byte minimum")
        }
        guard headersLength <= EventStreamFraming.maximumHeadersLength,
              headersLength <= total - EventStreamFraming.minimumMessageLength
        else {
            throw EventStreamError(.invalidLength, "\(headersLength) bytes of headers do not fit a message of \(total) bytes (or exceed 128 KiB)")
        }
        let payloadLength = total - EventStreamFraming.minimumMessageLength - headersLength
        guard payloadLength <= EventStreamFraming.maximumPayloadLength else {
            throw EventStreamError(.invalidLength, "a payload of \(payloadLength) bytes exceeds the 24 MiB limit")
        }
        guard bufferedByteCount >= total else { return nil }
        let messageCRC = readUInt32(at: start + total - 4)
        guard CRC32.checksum(buffer[start..<start + total - 4]) == messageCRC else {
            throw EventStreamError(.messageChecksumMismatch, "the message's CRC32 does not match")
        }
        let headersStart = start + EventStreamFraming.preludeLength
        let headers = try Self.decodeHeaders(buffer[headersStart..<headersStart + headersLength])
        let payload = Data(buffer[headersStart + headersLength..<start + total - 4])
        start += total
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return EventStreamMessage(headers: headers, payload: payload)
    }

    private func readUInt32(at offset: Int) -> UInt32 {
        buffer[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    private static func decodeHeaders(_ bytes: ArraySlice<UInt8>) throws(EventStreamError) -> [EventStreamHeader] {
        var headers: [EventStreamHeader] = []
        var names: Set<String> = []
        var offset = bytes.startIndex
        func take(_ count: Int, _ what: String) throws(EventStreamError) -> ArraySlice<UInt8> {
            guard count <= bytes.endIndex - offset else {
                throw EventStreamError(.invalidHeader, "a header's \(what) runs past the end of the headers")
            }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
        func integer(_ count: Int, _ what: String) throws(EventStreamError) -> UInt64 {
            try take(count, what).reduce(0) { $0 << 8 | UInt64($1) }
        }
        while offset < bytes.endIndex {
            let nameLength = Int(try integer(1, "name length"))
            guard nameLength > 0 else { throw EventStreamError(.invalidHeader, "a header has an empty name") }
            guard let name = String(validating: try take(nameLength, "name"), as: UTF8.self) else {
                throw EventStreamError(.invalidHeader, "a header name is not UTF-8")
            }
            let shownName = String(name.debugDescription.prefix(64))
            guard names.insert(name).inserted else {
                throw EventStreamError(.invalidHeader, "header \(shownName) appears twice")
            }
            let type = try integer(1, "type")
            let value: EventStreamHeaderValue
            switch type {
            case 0: value = .bool(true)
            case 1: value = .bool(false)
            case 2: value = .byte(Int8(truncatingIfNeeded: try integer(1, "value")))
            case 3: value = .short(Int16(truncatingIfNeeded: try integer(2, "value")))
            case 4: value = .integer(Int32(truncatingIfNeeded: try integer(4, "value")))
            case 5: value = .long(Int64(bitPattern: try integer(8, "value")))
            case 6: value = .byteArray(Data(try take(Int(try integer(2, "length")), "value")))
            case 7:
                guard let string = String(validating: try take(Int(try integer(2, "length")), "value"), as: UTF8.self) else {
                    throw EventStreamError(.invalidHeader, "the string value of header \(shownName) is not UTF-8")
                }
                value = .string(string)
            case 8: value = .timestamp(milliseconds: Int64(bitPattern: try integer(8, "value")))
            case 9:
                let raw = Array(try take(16, "value"))
                value = .uuid(UUID(uuid: (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                                          raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15])))
            default:
                throw EventStreamError(.invalidHeader, "header \(shownName) has unknown type \(type)")
            }
            headers.append(EventStreamHeader(name, value))
        }
        return headers
    }
}
