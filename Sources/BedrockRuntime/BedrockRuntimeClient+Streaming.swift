import AWSEventStream
import BedrockErrors
import Foundation
import Logging
#if canImport(FoundationNetworking)
import FoundationNetworking
import TimeLimit
#endif

extension BedrockRuntimeClient {
    /// Calls ConverseStream: `POST /model/{modelId}/converse-stream`.
    ///
    /// Returns once the answer's head has arrived; the events follow as Bedrock generates them. Errors before
    /// the stream (quota throttles, 503s, validation) are thrown here; errors inside it (exception events,
    /// a corrupted or truncated frame, a dropped connection) are thrown by the sequence, classified.
    /// Cancelling the task that iterates the events, or dropping the sequence, closes the connection.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - request: The same request as for ``converse(modelId:request:)``.
    /// - Returns: The events; the last is `metadata` with the usage to settle.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func converseStream(modelId: String, request: ConverseRequest) async throws -> AsyncThrowingStream<ConverseStreamEvent, any Error> {
        let payload = try Self.json(request, operation: "converse-stream")
        return try await openEventStream(modelId: modelId, operation: "converse-stream", payload: payload, extraHeaders: []) { message in
            try ConverseStreamPayload.event(type: message.eventType ?? "", payload: message.payload)
        }
    }

    /// Calls InvokeModel: `POST /model/{modelId}/invoke` with the model's native request body.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - body: The request in the model's native format (e.g. Anthropic's Messages API JSON).
    ///   - contentType: The body's content type.
    /// - Returns: The native answer body and the usage from Bedrock's token-count headers.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func invokeModel(modelId: String, body: Data, contentType: String = "application/json") async throws -> InvokeModelResponse {
        let (data, http) = try await exchange(modelId: modelId, operation: "invoke", payload: body, contentType: contentType)
        func count(_ name: String) -> Int? { http.value(forHTTPHeaderField: "x-amzn-bedrock-\(name)").flatMap { Int($0) } }
        let usage = count("input-token-count").flatMap { input in
            count("output-token-count").map { output in
                TokenUsage(inputTokens: input, outputTokens: output,
                           cacheReadInputTokens: count("cache-read-input-token-count") ?? 0,
                           cacheWriteInputTokens: count("cache-write-input-token-count") ?? 0)
            }
        }
        return InvokeModelResponse(
            body: data, contentType: http.value(forHTTPHeaderField: "Content-Type"), usage: usage,
            invocationLatencyMs: count("invocation-latency"))
    }

    /// Calls InvokeModelWithResponseStream: `POST /model/{modelId}/invoke-with-response-stream`.
    ///
    /// Errors before and inside the stream, and cancellation, behave as for
    /// ``converseStream(modelId:request:)``.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN.
    ///   - body: The request in the model's native format.
    ///   - contentType: The body's content type.
    /// - Returns: The chunks; the final one carries `amazon-bedrock-invocationMetrics` with the usage.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func invokeModelWithResponseStream(
        modelId: String, body: Data, contentType: String = "application/json"
    ) async throws -> AsyncThrowingStream<InvokeModelChunk, any Error> {
        try await openEventStream(
            modelId: modelId, operation: "invoke-with-response-stream", payload: body, contentType: contentType,
            extraHeaders: [("X-Amzn-Bedrock-Accept", "application/json")]
        ) { message -> InvokeModelChunk? in
            message.eventType == "chunk" ? try InvokeModelStreamPayload.chunk(payload: message.payload) : nil
        }
    }

    // MARK: - Event streams

    /// Sends a request whose answer is an event stream and returns its events, decoded by `decode` (nil
    /// skips a message). Exception and error messages end the stream with a classified ``BedrockError``.
    private func openEventStream<Event: Sendable>(
        modelId: String, operation: String, payload: Data, contentType: String = "application/json",
        extraHeaders: [(String, String)], decode: @escaping @Sendable (EventStreamMessage) throws -> Event?
    ) async throws -> AsyncThrowingStream<Event, any Error> {
        let request = signedRequest(
            modelId: modelId, operation: operation, payload: payload, credentials: try await resolveCredentials(),
            contentType: contentType, accept: "application/vnd.amazon.eventstream", extraHeaders: extraHeaders)
        let started = ContinuousClock.now
        var metadata: Logger.Metadata = ["quotakeeper.model": "\(modelId)", "quotakeeper.operation": "\(operation)"]
        let http: HTTPURLResponse
        let body: StreamingTransport.Body
        do {
            (http, body) = try await streaming.open(request)
        } catch {
            try Task.checkCancellation()
            let failure = Self.transportError(error, operation: operation)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call failed", metadata: metadata)
            throw failure
        }
        metadata["quotakeeper.status"] = "\(http.statusCode)"
        guard (200..<300).contains(http.statusCode) else {
            var data = Data()
            do {
                for try await chunk in body where data.count < 65_536 { data += chunk }
            } catch {
                try Task.checkCancellation()
            }
            let failure = errorAnswer(http, body: data)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call refused", metadata: metadata)
            throw failure
        }
        metadata["quotakeeper.first_byte_ms"] = "\((ContinuousClock.now - started).millisecondsRoundedDown)"
        logger.debug("bedrock stream opened", metadata: metadata)

        let (events, continuation) = AsyncThrowingStream<Event, any Error>.makeStream()
        let classifier = configuration.classifier
        let logger = self.logger
        let pump = Task {
            var decoder = EventStreamDecoder()
            do {
                for try await chunk in body {
                    decoder.append(chunk)
                    while let message = try decoder.next() {
                        if let event = try Self.event(of: message, decode: decode, classifier: classifier, operation: operation) {
                            continuation.yield(event)
                        }
                    }
                }
                try Task.checkCancellation()
                try decoder.finish()
                continuation.finish()
            } catch {
                let failure: any Error
                switch error {
                case is CancellationError: failure = error
                case _ where Task.isCancelled: failure = CancellationError()
                case let bedrock as BedrockError: failure = bedrock
                case let framing as EventStreamError:
                    failure = BedrockError(kind: .connectionFailed, status: http.statusCode,
                                           message: "the \(operation) event stream is broken: \(framing.message)",
                                           source: .transport, underlying: framing)
                default: failure = Self.transportError(error, operation: operation)
                }
                if let bedrock = failure as? BedrockError { metadata["quotakeeper.error_kind"] = "\(bedrock.kind.rawValue)" }
                logger.debug("bedrock stream ended with an error", metadata: metadata)
                continuation.finish(throwing: failure)
            }
        }
        continuation.onTermination = { _ in pump.cancel() }
        return events
    }

    /// The event of one message, or a thrown ``BedrockError`` for an exception or error message.
    private static func event<Event>(
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
