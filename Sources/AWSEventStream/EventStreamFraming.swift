import Foundation

/// The framing's sizes and limits.
public enum EventStreamFraming {
    /// Total length, headers length, prelude CRC: 3 x 4 bytes.
    public static let preludeLength = 12
    /// Prelude plus the trailing message CRC: the smallest possible message.
    public static let minimumMessageLength = 16
    /// The most header bytes a message may carry (as botocore and the AWS SDKs allow).
    public static let maximumHeadersLength = 128 * 1024
    /// The largest payload a message may carry (as botocore allows).
    public static let maximumPayloadLength = 24 * 1024 * 1024
}

/// Writes ``EventStreamMessage``s in the AWS event-stream binary framing: prelude (total length, headers
/// length, CRC32 of both), headers, payload, CRC32 of everything before it. Integers are big-endian.
public enum EventStreamEncoder {
    /// The bytes of one message.
    /// - Throws: ``EventStreamError`` (`invalidHeader` for an empty or over-long name or value,
    ///   `invalidLength` past the framing's limits).
    public static func encode(_ message: EventStreamMessage) throws(EventStreamError) -> Data {
        var headers: [UInt8] = []
        for header in message.headers {
            let name = Array(header.name.utf8)
            guard (1...255).contains(name.count) else {
                throw EventStreamError(.invalidHeader, "a header name must be 1-255 bytes of UTF-8, not \(name.count)")
            }
            headers.append(UInt8(name.count))
            headers += name
            headers.append(header.value.typeCode)
            switch header.value {
            case .bool: break
            case .byte(let value): headers.append(UInt8(bitPattern: value))
            case .short(let value): append(UInt16(bitPattern: value), to: &headers)
            case .integer(let value): append(UInt32(bitPattern: value), to: &headers)
            case .long(let value), .timestamp(milliseconds: let value): append(UInt64(bitPattern: value), to: &headers)
            case .byteArray(let value): try appendSized(Array(value), to: &headers, name: header.name)
            case .string(let value): try appendSized(Array(value.utf8), to: &headers, name: header.name)
            case .uuid(let value): withUnsafeBytes(of: value.uuid) { headers += $0 }
            }
        }
        guard headers.count <= EventStreamFraming.maximumHeadersLength,
              message.payload.count <= EventStreamFraming.maximumPayloadLength
        else {
            throw EventStreamError(.invalidLength, "headers of \(headers.count) bytes or a payload of \(message.payload.count) bytes exceed the framing's limits")
        }
        let total = EventStreamFraming.minimumMessageLength + headers.count + message.payload.count
        var bytes: [UInt8] = []
        bytes.reserveCapacity(total)
        append(UInt32(total), to: &bytes)
        append(UInt32(headers.count), to: &bytes)
        append(CRC32.checksum(bytes), to: &bytes)
        bytes += headers
        bytes += message.payload
        append(CRC32.checksum(bytes), to: &bytes)
        return Data(bytes)
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }

    private static func appendSized(_ value: [UInt8], to bytes: inout [UInt8], name: String) throws(EventStreamError) {
        guard value.count <= Int(UInt16.max) else {
            throw EventStreamError(.invalidHeader, "header \(name.debugDescription.prefix(64)) has \(value.count) bytes; at most 65535 fit")
        }
        append(UInt16(value.count), to: &bytes)
        bytes += value
    }
}
