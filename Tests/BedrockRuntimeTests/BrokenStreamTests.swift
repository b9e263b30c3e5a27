import AWSEventStream
import BedrockErrors
import BedrockRuntime
import FlyingFox
import Foundation
import Testing

/// The client against a loopback server that answers ConverseStream with damaged event streams: every kind
/// of damage ends the sequence with a typed error after the intact events, never a crash or a silent end.
@Suite("ConverseStream over damaged event streams")
struct BrokenStreamTests {
    static let start = try! EventStreamEncoder.encode(.event("messageStart", payload: Data(#"{"role":"assistant"}"#.utf8)))
    static let delta = try! EventStreamEncoder.encode(.event("contentBlockDelta", payload: Data(#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#.utf8)))

    /// Runs `body` with a client whose endpoint answers every request with `answer` (status 200, event stream).
    static func withServer(answering answer: Data, _ body: (BedrockRuntimeClient) async throws -> Void) async throws {
        let server = HTTPServer(
            config: HTTPServer.Configuration(address: try .inet(ip4: "127.0.0.1", port: 0), timeout: 10, logger: .disabled),
            handler: ClosureHTTPHandler { _ in
                HTTPResponse(statusCode: .ok, headers: [.contentType: "application/vnd.amazon.eventstream"], body: answer)
            })
        let run = Task { try await server.run() }
        defer { run.cancel() }
        try await server.waitUntilListening(timeout: 5)
        guard case .ip4(_, let port)? = await server.listeningAddress else {
            Issue.record("no listening address")
            return
        }
        var configuration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:\(port)")!)
        configuration.credentials = StaticCredentialsProvider(testCredentials)
        configuration.timeouts = .init(idle: .seconds(10), total: .seconds(20))
        try await body(BedrockRuntimeClient(configuration: configuration))
        await server.stop(timeout: 0.2)
    }

    /// The events read before the stream failed, and its error.
    static func read(_ client: BedrockRuntimeClient) async throws -> ([ConverseStreamEvent], BedrockError?) {
        var events: [ConverseStreamEvent] = []
        do {
            for try await event in try await client.converseStream(modelId: "m", request: prompt(maxTokens: 10)) {
                events.append(event)
            }
            return (events, nil)
        } catch let error as BedrockError {
            return (events, error)
        }
    }

    @Test("damage after two intact events is a connection-failed BedrockError carrying the EventStreamError",
          arguments: [("truncated", EventStreamError.Code.truncated),
                      ("payload corrupted", .messageChecksumMismatch),
                      ("prelude corrupted", .preludeChecksumMismatch)])
    func damagedStream(damage: String, code: EventStreamError.Code) async throws {
        var third = Self.delta
        switch damage {
        case "truncated": third = third.prefix(third.count - 5)
        case "payload corrupted": third[third.count - 8] ^= 0x01
        default: third[2] ^= 0x01
        }
        try await Self.withServer(answering: Self.start + Self.delta + third) { client in
            let (events, error) = try await Self.read(client)
            #expect(events.count == 2)
            let failure = try #require(error)
            #expect(failure.kind == .connectionFailed && failure.source == .transport)
            #expect((failure.underlying as? EventStreamError)?.code == code)
        }
    }

    @Test("an error message (:message-type error) is thrown classified")
    func errorMessage() async throws {
        let error = try EventStreamEncoder.encode(EventStreamMessage(headers: [
            EventStreamHeader(":message-type", .string("error")),
            EventStreamHeader(":error-code", .string("InternalServerException")),
            EventStreamHeader(":error-message", .string("internal failure")),
        ]))
        try await Self.withServer(answering: Self.start + error) { client in
            let (events, failure) = try await Self.read(client)
            #expect(events == [.messageStart(role: .assistant)])
            #expect(failure?.kind == .internalServer && failure?.message == "internal failure")
        }
    }
}
