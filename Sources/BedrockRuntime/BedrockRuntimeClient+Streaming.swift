import AsyncHTTPClient
import AWSEventStream
import BedrockErrors
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TimeLimit

extension BedrockRuntimeClient {
    /// Calls ConverseStream: `POST /model/{modelId}/converse-stream`.
    ///
    /// Returns once the answer's head has arrived; the events follow as Bedrock generates them. Errors before
    /// the stream (quota throttles, 503s, validation) are thrown here; errors inside it (exception events,
    /// a corrupted or truncated frame, a dropped connection) are thrown by the sequence, classified.
    /// Cancelling the task that iterates the events, or dropping the sequence, closes the connection. The
    /// body is read as the events are: a consumer that reads slowly slows the connection down rather than
    /// buffering the stream.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - request: The same request as for ``converse(modelId:request:deadline:)``.
    ///   - deadline: When the whole stream must have ended (the earlier of it and the total timeout applies).
    /// - Returns: The events; the last is `metadata` with the usage to settle.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func converseStream(
        modelId: String, request: ConverseRequest, deadline: ContinuousClock.Instant? = nil
    ) async throws -> AsyncThrowingStream<ConverseStreamEvent, any Error> {
        let payload = try Self.json(request, operation: "converse-stream")
        return try await openEventStream(
            modelId: modelId, operation: "converse-stream", payload: payload, extraHeaders: [], deadline: deadline
        ) { message in
            try ConverseStreamPayload.event(type: message.eventType ?? "", payload: message.payload)
        }
    }

    /// Calls InvokeModel: `POST /model/{modelId}/invoke` with the model's native request body.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - body: The request in the model's native format (e.g. Anthropic's Messages API JSON).
    ///   - contentType: The body's content type.
    ///   - deadline: When the call must have ended (the earlier of it and the total timeout applies).
    /// - Returns: The native answer body and the usage from Bedrock's token-count headers.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func invokeModel(
        modelId: String, body: Data, contentType: String = "application/json", deadline: ContinuousClock.Instant? = nil
    ) async throws -> InvokeModelResponse {
        let answer = try await exchange(modelId: modelId, operation: "invoke", payload: body, deadline: deadline, contentType: contentType)
        func count(_ name: String) -> Int? { answer.headers.first(name: "x-amzn-bedrock-\(name)").flatMap { Int($0) } }
        let usage = count("input-token-count").flatMap { input in
            count("output-token-count").map { output in
                TokenUsage(inputTokens: input, outputTokens: output,
                           cacheReadInputTokens: count("cache-read-input-token-count") ?? 0,
                           cacheWriteInputTokens: count("cache-write-input-token-count") ?? 0)
            }
        }
        return InvokeModelResponse(
            body: answer.body, contentType: answer.headers.first(name: "Content-Type"), usage: usage,
            invocationLatencyMs: count("invocation-latency"))
    }

    /// Calls InvokeModelWithResponseStream: `POST /model/{modelId}/invoke-with-response-stream`.
    ///
    /// Errors before and inside the stream, and cancellation, behave as for
    /// ``converseStream(modelId:request:deadline:)``.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - body: The request in the model's native format.
    ///   - contentType: The body's content type.
    ///   - deadline: When the whole stream must have ended (the earlier of it and the total timeout applies).
    /// - Returns: The chunks; the final one carries `amazon-bedrock-invocationMetrics` with the usage.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func invokeModelWithResponseStream(
        modelId: String, body: Data, contentType: String = "application/json", deadline: ContinuousClock.Instant? = nil
    ) async throws -> AsyncThrowingStream<InvokeModelChunk, any Error> {
        try await openEventStream(
            modelId: modelId, operation: "invoke-with-response-stream", payload: body, contentType: contentType,
            extraHeaders: [("X-Amzn-Bedrock-Accept", "application/json")], deadline: deadline
        ) { message -> InvokeModelChunk? in
            message.eventType == "chunk" ? try InvokeModelStreamPayload.chunk(payload: message.payload) : nil
        }
    }

    // MARK: - Event streams

    /// Sends a request whose answer is an event stream and returns its events, decoded by `decode` (nil
    /// skips a message). Exception and error messages end the stream with a classified ``BedrockError``.
    private func openEventStream<Event: Sendable>(
        modelId: String, operation: String, payload: Data, contentType: String = "application/json",
        extraHeaders: [(String, String)], deadline: ContinuousClock.Instant?,
        decode: @escaping @Sendable (EventStreamMessage) throws -> Event?
    ) async throws -> AsyncThrowingStream<Event, any Error> {
        let request = signedRequest(
            modelId: modelId, operation: operation, payload: payload, credentials: try await resolveCredentials(),
            contentType: contentType, accept: "application/vnd.amazon.eventstream", extraHeaders: extraHeaders)
        let started = ContinuousClock.now
        let end = callDeadline(deadline, from: started)
        var metadata: Logger.Metadata = ["quotakeeper.model": "\(modelId)", "quotakeeper.operation": "\(operation)"]
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, deadline: Self.nioDeadline(end))
        } catch {
            try Task.checkCancellation()
            let failure = transportError(error, operation: operation)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call failed", metadata: metadata)
            throw failure
        }
        let status = Int(response.status.code)
        metadata["quotakeeper.status"] = "\(status)"
        guard (200..<300).contains(status) else {
            var data = Data()
            do {
                data = try await withTimeLimit(until: end) { try await Self.collect(response.body, upTo: Self.maximumErrorBodyBytes) } ?? Data()
            } catch {
                try Task.checkCancellation()
            }
            let failure = errorAnswer(status: status, headers: response.headers, body: data)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call refused", metadata: metadata)
            throw failure
        }
        metadata["quotakeeper.first_byte_ms"] = "\((ContinuousClock.now - started).millisecondsRoundedDown)"
        logger.debug("bedrock stream opened", metadata: metadata)
        let reader = EventStreamReader(
            client: self, body: response.body, deadline: end, operation: operation, status: status, metadata: metadata,
            decode: decode)
        // Pull-based: each next() of the consumer reads the body only as far as the next event.
        return AsyncThrowingStream(unfolding: { try await reader.next() })
    }

    /// The event of one message, or a thrown ``BedrockError`` for an exception or error message.
    static func event<Event>(
        of message: EventStreamMessage, decode: (EventStreamMessage) throws -> Event?,
        classifier: BedrockErrorClassifier, operation: String
    ) throws -> Event? {
        switch message.messageType {
        case "event":
            do {
                return try decode(message)
            } catch {
                throw BedrockError(kind: .unknown, message: "a \(operation) event of type \(message.eventType.map { String($0.prefix(64)) } ?? "?") could not be decoded",
                                   source: .streamEvent, underlying: error)
            }
        case "exception":
            throw classifier.classify(
                streamExceptionEvent: message.exceptionType ?? message.eventType ?? "",
                message: bodyField("message", in: message.payload) ?? bodyField("Message", in: message.payload))
        case "error":
            throw classifier.classify(
                streamExceptionEvent: message.string(header: ":error-code") ?? "",
                message: message.string(header: ":error-message").map { String($0.prefix(1_024)) })
        default:
            throw BedrockError(kind: .unknown, message: "the \(operation) stream sent a message of unknown type",
                               source: .streamEvent)
        }
    }
}

/// Reads one event-stream answer on demand: each ``next()`` reads body chunks (`ByteBuffer`s, straight into
/// the ``EventStreamDecoder``) only until it has the next event, so the connection is read no faster than
/// the consumer reads events (async-http-client stops reading the socket when its small buffer is full: TCP
/// backpressure, nothing piles up here). Each read is bounded by the call's deadline. Dropping the reader
/// (the stream's consumer stopped) cancels the request, which closes the connection.
final class EventStreamReader<Event: Sendable>: @unchecked Sendable {
    // @unchecked: `chunks`, `decoder` and `ended` are used by one next() at a time, which `reading` enforces.
    private let reading = Mutex(false)
    private var chunks: HTTPClientResponse.Body.AsyncIterator
    private var decoder = EventStreamDecoder()
    private var ended = false
    private let client: BedrockRuntimeClient  // kept alive (and so its HTTPClient) while the stream is read
    private let deadline: ContinuousClock.Instant
    private let operation: String
    private let status: Int
    private let metadata: Logger.Metadata
    private let decode: @Sendable (EventStreamMessage) throws -> Event?

    init(
        client: BedrockRuntimeClient, body: HTTPClientResponse.Body, deadline: ContinuousClock.Instant, operation: String,
        status: Int, metadata: Logger.Metadata, decode: @escaping @Sendable (EventStreamMessage) throws -> Event?
    ) {
        self.client = client
        self.chunks = body.makeAsyncIterator()
        self.deadline = deadline
        self.operation = operation
        self.status = status
        self.metadata = metadata
        self.decode = decode
    }

    /// The next event; nil at the end of the stream.
    /// - Throws: a classified ``BedrockError`` (exception or error message, broken framing, transport
    ///   failure, the deadline), or `CancellationError`; after that, every call returns nil.
    func next() async throws -> Event? {
        guard reading.withLock({ busy in defer { busy = true }; return !busy }) else {
            throw BedrockError(kind: .unknown, message: "the \(operation) stream was read by two tasks at once", source: .client)
        }
        defer { reading.withLock { $0 = false } }
        guard !ended else { return nil }
        do {
            while true {
                if let message = try decoder.next() {
                    if let event = try BedrockRuntimeClient.event(
                        of: message, decode: decode, classifier: client.configuration.classifier, operation: operation) {
                        return event
                    }
                    continue
                }
                guard let chunk = try await nextChunk() else {
                    try Task.checkCancellation()
                    try decoder.finish()
                    ended = true
                    return nil
                }
                decoder.append(chunk.readableBytesView)
            }
        } catch {
            ended = true
            throw failure(error)
        }
    }

    /// The next chunk of the body, nil at its end; `HTTPClientError.deadlineExceeded` past the deadline.
    private func nextChunk() async throws -> ByteBuffer? {
        guard let chunk = try await withTimeLimit(until: deadline, { try await self.chunks.next() }) else {
            throw HTTPClientError.deadlineExceeded
        }
        return chunk
    }

    /// What a failure while reading is thrown as (and logged).
    private func failure(_ error: any Error) -> any Error {
        let failure: any Error
        switch error {
        case is CancellationError: failure = error
        case _ where Task.isCancelled: failure = CancellationError()
        case let bedrock as BedrockError: failure = bedrock
        case let framing as EventStreamError:
            failure = BedrockError(kind: .connectionFailed, status: status,
                                   message: "the \(operation) event stream is broken: \(framing.message)",
                                   source: .transport, underlying: framing)
        default: failure = client.transportError(error, operation: operation)
        }
        var metadata = self.metadata
        if let bedrock = failure as? BedrockError { metadata["quotakeeper.error_kind"] = "\(bedrock.kind.rawValue)" }
        client.logger.debug("bedrock stream ended with an error", metadata: metadata)
        return failure
    }
}
