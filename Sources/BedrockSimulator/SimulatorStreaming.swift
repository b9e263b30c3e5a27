import AWSEventStream
import FlyingFox
import FlyingSocks
import Foundation

/// Streamed answers (ConverseStream, InvokeModelWithResponseStream) as bedrock-runtime sends them: AWS
/// event-stream frames over a chunked HTTP body, the first content after the model's time to first token
/// and the rest at its output tokens per second.
///
/// The generation runs in its own task whatever the client does: the hold taken at the start is settled
/// when the planned output has been produced (or an injected exception was sent), as with Converse.
enum SimulatorStreaming {
    /// What a stream is for: Converse's typed events, or the model's native chunks.
    enum Flavour { case converse, invokeModel }

    /// The body of a streamed answer for an admitted request; starts generating at once.
    static func body(for plan: ConversePlan, flavour: Flavour, engine: SimulatorEngine, timeScale: Double) -> HTTPBodySequence {
        let (frames, continuation) = AsyncStream<Data>.makeStream()
        Task {
            // Framing our own small messages cannot fail; an empty frame would only be skipped.
            let send = { (message: EventStreamMessage) -> Void in
                _ = continuation.yield((try? EventStreamEncoder.encode(message)) ?? Data())
            }
            let (sent, trailer) = await generate(plan, flavour: flavour, timeScale: timeScale, send: send)
            // Settled before the last messages go out: a client that has read the whole stream sees the charge.
            await engine.finishConverse(plan, outputTokensSent: plan.streamError == nil ? nil : sent)
            trailer.forEach(send)
            continuation.finish()
        }
        return HTTPBodySequence(from: FrameBytes(frames: frames), suggestedBufferSize: 16_384)
    }

    /// Sends the stream's messages at the model's pace; returns the output tokens sent and the messages that
    /// end the stream (the closing events, or the injected exception).
    private static func generate(
        _ plan: ConversePlan, flavour: Flavour, timeScale: Double, send: (EventStreamMessage) -> Void
    ) async -> (sent: Int, trailer: [EventStreamMessage]) {
        let words = ConverseResponseBody.text(tokens: plan.outputTokens, seed: plan.outputSeed)
            .split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        // One delta per 10 ms of wall time (4 to 32 per answer, never more than words): each carries a run of
        // words (one word is one token). Bounded so that a fast, time-scaled fleet does not spend its CPU on
        // frames and delay the referee's admissions.
        let outputWallMilliseconds = Double(words.count) / plan.outputTokensPerSecond * 1_000 * timeScale
        let deltas = max(1, min(words.count, 32, max(4, Int(outputWallMilliseconds / 10))))
        let perDelta = (words.count + deltas - 1) / deltas
        let breakAfter = plan.streamError.map { _ in max(1, plan.outputTokens / 2) }
        let wall = { (milliseconds: Double) -> Duration in .milliseconds(milliseconds * timeScale) }

        try? await Task.sleep(for: wall(plan.timeToFirstTokenMs))
        let start = events(flavour: flavour, plan: plan)
        start.forEach(send)
        var sent = 0
        var offset = 0
        while offset < words.count {
            let run = words[offset..<min(words.count, offset + perDelta)]
            if offset > 0 {
                try? await Task.sleep(for: wall(Double(run.count) / plan.outputTokensPerSecond * 1_000))
            }
            send(delta(flavour: flavour, text: (offset > 0 ? " " : "") + run.joined(separator: " ")))
            sent += run.count
            offset += run.count
            if let breakAfter, let injected = plan.streamError, sent >= breakAfter, sent < plan.outputTokens {
                return (sent, [.exception(injected.exceptionType, payload: json(["message": injected.message]))])
            }
        }
        return (sent, end(flavour: flavour, plan: plan))
    }

    private static func json(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    /// An InvokeModelWithResponseStream chunk: the native event, base64 in `{"bytes": ...}`.
    private static func chunk(_ native: [String: JSONAny]) -> EventStreamMessage {
        .event("chunk", payload: json(["bytes": json(native).base64EncodedString()]))
    }

    private static func events(flavour: Flavour, plan: ConversePlan) -> [EventStreamMessage] {
        switch flavour {
        case .converse:
            return [.event("messageStart", payload: json(["role": "assistant"]))]
        case .invokeModel:
            return [
                chunk(["type": "message_start", "message": .object([
                    "id": "msg_sim_\(plan.ticket)", "type": "message", "role": "assistant", "model": .string(plan.modelId),
                    "content": .array([]), "usage": .object(["input_tokens": .int(plan.inputTokens), "output_tokens": 1]),
                ])]),
                chunk(["type": "content_block_start", "index": 0, "content_block": .object(["type": "text", "text": ""])]),
            ]
        }
    }

    private static func delta(flavour: Flavour, text: String) -> EventStreamMessage {
        switch flavour {
        case .converse:
            return .event("contentBlockDelta", payload: json(ConverseDelta(contentBlockIndex: 0, delta: .init(text: text))))
        case .invokeModel:
            return chunk(["type": "content_block_delta", "index": 0, "delta": .object(["type": "text_delta", "text": .string(text)])])
        }
    }

    private static func end(flavour: Flavour, plan: ConversePlan) -> [EventStreamMessage] {
        let usage = ConverseResponseBody(plan: plan).usage
        switch flavour {
        case .converse:
            return [
                .event("contentBlockStop", payload: json(["contentBlockIndex": 0])),
                .event("messageStop", payload: json(["stopReason": plan.stopReason])),
                .event("metadata", payload: json(ConverseMetadata(usage: usage, metrics: .init(latencyMs: plan.latencyMs)))),
            ]
        case .invokeModel:
            return [
                chunk(["type": "content_block_stop", "index": 0]),
                chunk(["type": "message_delta", "delta": .object(["stop_reason": .string(plan.stopReason)]),
                       "usage": .object(["output_tokens": .int(plan.outputTokens)])]),
                chunk(["type": "message_stop", "amazon-bedrock-invocationMetrics": .object([
                    "inputTokenCount": .int(plan.inputTokens), "outputTokenCount": .int(plan.outputTokens),
                    "invocationLatency": .int(plan.latencyMs), "firstByteLatency": .int(Int(plan.timeToFirstTokenMs.rounded())),
                    "cacheReadInputTokenCount": .int(plan.cacheReadInputTokens),
                    "cacheWriteInputTokenCount": .int(plan.cacheWriteInputTokens),
                ])]),
            ]
        }
    }

    private struct ConverseDelta: Encodable {
        struct Delta: Encodable { var text: String }
        var contentBlockIndex: Int
        var delta: Delta
    }

    private struct ConverseMetadata: Encodable {
        var usage: ConverseResponseBody.Usage
        var metrics: ConverseResponseBody.Metrics
    }
}

/// InvokeModel's (non-streamed) answer: an Anthropic Messages API response, with the token counts in
/// Bedrock's `x-amzn-bedrock-*` headers.
enum InvokeModelAnswer {
    static func response(for plan: ConversePlan) -> HTTPResponse {
        let text = ConverseResponseBody.text(tokens: plan.outputTokens, seed: plan.outputSeed)
        let body: [String: JSONAny] = [
            "id": "msg_sim_\(plan.ticket)", "type": "message", "role": "assistant", "model": .string(plan.modelId),
            "content": .array([.object(["type": "text", "text": .string(text)])]),
            "stop_reason": .string(plan.stopReason),
            "usage": .object(["input_tokens": .int(plan.inputTokens), "output_tokens": .int(plan.outputTokens)]),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return HTTPResponse(
            statusCode: .ok,
            headers: [
                .contentType: "application/json",
                HTTPHeader("x-amzn-RequestId"): UUID().uuidString.lowercased(),
                HTTPHeader("x-amzn-bedrock-input-token-count"): "\(plan.inputTokens)",
                HTTPHeader("x-amzn-bedrock-output-token-count"): "\(plan.outputTokens)",
                HTTPHeader("x-amzn-bedrock-cache-read-input-token-count"): "\(plan.cacheReadInputTokens)",
                HTTPHeader("x-amzn-bedrock-cache-write-input-token-count"): "\(plan.cacheWriteInputTokens)",
                HTTPHeader("x-amzn-bedrock-invocation-latency"): "\(plan.latencyMs)",
            ],
            body: (try? encoder.encode(body)) ?? Data("{}".utf8))
    }
}

/// A small JSON value for the native (Anthropic-shaped) bodies the simulator writes.
enum JSONAny: Encodable, ExpressibleByStringInterpolation, ExpressibleByIntegerLiteral {
    case string(String), int(Int), array([JSONAny]), object([String: JSONAny])
    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// Frames as the bytes of a chunked HTTP body: each frame is handed to the server as soon as it exists.
struct FrameBytes: AsyncBufferedSequence {
    typealias Element = UInt8
    let frames: AsyncStream<Data>

    func makeAsyncIterator() -> Iterator { Iterator(frames: frames.makeAsyncIterator()) }

    struct Iterator: AsyncBufferedIteratorProtocol {
        var frames: AsyncStream<Data>.Iterator
        var pending = Data()

        mutating func next() async -> UInt8? {
            await nextBuffer(suggested: 1)?.first
        }

        mutating func nextBuffer(suggested count: Int) async -> Data? {
            while pending.isEmpty {
                guard let frame = await frames.next() else { return nil }
                pending = frame
            }
            let buffer = Data(pending.prefix(Swift.max(1, count)))
            pending.removeFirst(buffer.count)
            return buffer
        }
    }
}
