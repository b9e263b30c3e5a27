import AWSEventStream
import Foundation
import Testing

/// Frames made by scripts/eventstream-vectors.py and read by botocore's own event-stream parser: the
/// decoder must read what botocore read, the encoder must write the bytes botocore accepted, and every
/// corrupted, malformed or truncated frame must be a typed error.
@Suite struct EventStreamVectorTests {
    struct Vectors: Decodable {
        struct Header: Decodable {
            var name: String
            var type: String
            var value: Value
        }
        enum Value: Decodable {
            case bool(Bool), integer(Int64), text(String)
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let value = try? container.decode(Bool.self) { self = .bool(value) }
                else if let value = try? container.decode(Int64.self) { self = .integer(value) }
                else { self = .text(try container.decode(String.self)) }
            }
        }
        struct Positive: Decodable {
            var name: String
            var frame: String
            var headers: [Header]
            var payload: String
        }
        struct Negative: Decodable {
            var name: String
            var frame: String
            var error: String
        }
        struct Truncated: Decodable {
            var name: String
            var frame: String
        }
        var botocore: String
        var positive: [Positive]
        var negative: [Negative]
        var truncated: [Truncated]
    }

    static let vectors: Vectors = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appending(path: "Fixtures/eventstream-vectors.json")
        return try! JSONDecoder().decode(Vectors.self, from: Data(contentsOf: url))
    }()

    static func expectedHeaders(_ headers: [Vectors.Header]) throws -> [EventStreamHeader] {
        try headers.map { header in
            let value: EventStreamHeaderValue
            switch (header.type, header.value) {
            case ("true", _): value = .bool(true)
            case ("false", _): value = .bool(false)
            case ("byte", .integer(let v)): value = .byte(Int8(v))
            case ("short", .integer(let v)): value = .short(Int16(v))
            case ("integer", .integer(let v)): value = .integer(Int32(v))
            case ("long", .integer(let v)): value = .long(v)
            case ("timestamp", .integer(let v)): value = .timestamp(milliseconds: v)
            case ("bytes", .text(let v)): value = .byteArray(Data(base64Encoded: v)!)
            case ("string", .text(let v)): value = .string(v)
            case ("uuid", .text(let v)): value = .uuid(try #require(UUID(uuidString: v)))
            default: throw EventStreamError(.invalidHeader, "fixture header \(header.name) of type \(header.type)")
            }
            return EventStreamHeader(header.name, value)
        }
    }

    @Test func fixturesCoverEveryHeaderType() throws {
        let types = Set(Self.vectors.positive.flatMap { $0.headers.map(\.type) })
        #expect(types == ["true", "false", "byte", "short", "integer", "long", "bytes", "string", "timestamp", "uuid"])
        #expect(Self.vectors.positive.count >= 7 && Self.vectors.negative.count >= 10 && !Self.vectors.botocore.isEmpty)
    }

    @Test(arguments: vectors.positive.map(\.name))
    func decodesWhatBotocoreRead(name: String) throws {
        let vector = try #require(Self.vectors.positive.first { $0.name == name })
        let frame = try #require(Data(base64Encoded: vector.frame))
        let expected = EventStreamMessage(headers: try Self.expectedHeaders(vector.headers),
                                          payload: try #require(Data(base64Encoded: vector.payload)))
        var decoder = EventStreamDecoder()
        decoder.append(frame)
        #expect(try decoder.next() == expected)
        #expect(try decoder.next() == nil)
        try decoder.finish()
        // The encoder writes the very bytes botocore accepted.
        #expect(try EventStreamEncoder.encode(expected) == frame)
    }

    @Test func decodesAcrossChunksOfEverySize() throws {
        let frames = try Self.vectors.positive.map { try #require(Data(base64Encoded: $0.frame)) }
        let all = frames.reduce(Data(), +)
        var expected: [EventStreamMessage] = []
        for frame in frames {
            var single = EventStreamDecoder()
            single.append(frame)
            expected.append(try #require(try single.next()))
        }
        for chunkSize in [1, 2, 3, 7, 12, 13, 64, 1_000, all.count] {
            var decoder = EventStreamDecoder()
            var messages: [EventStreamMessage] = []
            var offset = 0
            while offset < all.count {
                let end = min(all.count, offset + chunkSize)
                decoder.append(all[offset..<end])
                offset = end
                while let message = try decoder.next() { messages.append(message) }
            }
            try decoder.finish()
            #expect(messages == expected, "chunks of \(chunkSize) bytes")
            #expect(decoder.bufferedByteCount == 0)
        }
    }

    @Test(arguments: vectors.negative.map(\.name))
    func refusesCorruptedAndMalformedFrames(name: String) throws {
        let vector = try #require(Self.vectors.negative.first { $0.name == name })
        var decoder = EventStreamDecoder()
        decoder.append(try #require(Data(base64Encoded: vector.frame)))
        let error = try #require(throws: EventStreamError.self) { _ = try decoder.next() }
        #expect(error.code.description == vector.error)
        // The framing is lost: the decoder keeps failing the same way instead of reading garbage.
        decoder.append([0, 0, 0, 0])
        #expect(throws: error) { _ = try decoder.next() }
        #expect(throws: error) { try decoder.finish() }
    }

    @Test(arguments: vectors.truncated.map(\.name))
    func aTruncatedFrameIsAnErrorAtTheEnd(name: String) throws {
        let vector = try #require(Self.vectors.truncated.first { $0.name == name })
        var decoder = EventStreamDecoder()
        decoder.append(try #require(Data(base64Encoded: vector.frame)))
        #expect(try decoder.next() == nil)
        let error = try #require(throws: EventStreamError.self) { try decoder.finish() }
        #expect(error.code == .truncated)
    }

    @Test func everyCorruptedByteOfAFrameIsCaught() throws {
        let frame = try EventStreamEncoder.encode(.event("contentBlockDelta", payload: Data(#"{"delta":{"text":"hi"}}"#.utf8)))
        for index in frame.indices {
            var corrupted = frame
            corrupted[index] ^= 0x10
            var decoder = EventStreamDecoder()
            decoder.append(corrupted)
            // The prelude CRC guards the lengths, the message CRC everything else: a flipped bit anywhere fails at once.
            let error = try #require(throws: EventStreamError.self, "byte \(index)") { _ = try decoder.next() }
            #expect([.preludeChecksumMismatch, .messageChecksumMismatch].contains(error.code), "byte \(index): \(error)")
        }
    }

    @Test func encoderRefusesWhatCannotBeFramed() {
        #expect(throws: EventStreamError.self) {
            try EventStreamEncoder.encode(EventStreamMessage(headers: [EventStreamHeader("", .bool(true))]))
        }
        #expect(throws: EventStreamError.self) {
            try EventStreamEncoder.encode(EventStreamMessage(headers: [EventStreamHeader("x", .string(String(repeating: "a", count: 70_000)))]))
        }
    }
}
