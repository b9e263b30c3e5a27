import AsyncHTTPClient
import BedrockErrors
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization
import TimeLimit

/// A Bedrock Runtime client without the AWS SDK: Converse, ConverseStream, InvokeModel,
/// InvokeModelWithResponseStream and CountTokens over HTTPS with SigV4, sent with async-http-client.
///
/// Every failure from the service or the transport is thrown as a ``BedrockError`` already classified
/// (so QuotaKeeper's call path can act on ``BedrockErrorKind``); cancellation is thrown as
/// `CancellationError`. Nothing is retried here: retries belong to the caller (QuotaKeeper's call path).
/// Logs go to the given `Logger` at debug level and carry the model id, status, error kind and latency;
/// never prompts, responses or credentials.
///
/// Share one client per process: it owns an `HTTPClient` and its HTTP/1.1 connection pool (or uses the one
/// it was given). Call ``shutdown()`` when done: it closes the pooled connections. A client dropped without
/// it shuts its `HTTPClient` down in the background.
public final class BedrockRuntimeClient: Sendable {
    /// The configuration in force.
    public let configuration: BedrockRuntimeConfiguration
    /// The HTTP client every call goes through.
    let httpClient: HTTPClient
    /// Whether ``httpClient`` was made here (and so is shut down here).
    private let ownsHTTPClient: Bool
    private let isShutDown = Mutex(false)
    private let signer: SigV4Signer
    let logger: Logger
    private let credentialsCache: CachingCredentialsProvider

    /// Creates a client.
    /// - Parameters:
    ///   - configuration: Region, endpoint, credentials, pool and timeouts.
    ///   - httpClient: An `HTTPClient` to share (its own pool and timeouts apply then, and its owner shuts it
    ///     down; `configuration.httpClientConfiguration` gives this client's settings to make one). Nil: the
    ///     client makes its own from `configuration` and shuts it down in ``shutdown()``.
    ///   - logger: Where to log (debug/trace only).
    public init(
        configuration: BedrockRuntimeConfiguration, httpClient: HTTPClient? = nil,
        logger: Logger = Logger(label: "quotakeeper.bedrock", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.httpClient = httpClient ?? HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                                                   configuration: configuration.httpClientConfiguration)
        self.ownsHTTPClient = httpClient == nil
        self.signer = SigV4Signer(service: "bedrock", region: configuration.region)
        self.logger = logger
        self.credentialsCache = CachingCredentialsProvider(configuration.credentials, lifetime: configuration.credentialsCacheDuration)
    }

    /// Closes the pooled connections and stops the client's `HTTPClient` (one it was given stays up). Calls
    /// still running fail; calls made after it fail as `connection-failed`. Calling it again does nothing.
    public func shutdown() async throws {
        guard ownsHTTPClient, isShutDown.withLock({ done in defer { done = true }; return !done }) else { return }
        try await httpClient.shutdown()
    }

    deinit {
        if ownsHTTPClient, !isShutDown.withLock({ $0 }) {
            httpClient.shutdown { _ in }  // in the background: keeps the HTTPClient alive until it is down
        }
    }

    /// Calls Converse: `POST /model/{modelId}/converse`.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN (`:` and `/` are percent-encoded in the path).
    ///   - request: Messages, system prompts, inference configuration.
    ///   - deadline: When the call must have ended (the caller's deadline); the earlier of it and
    ///     ``BedrockRuntimeConfiguration/Timeouts/total`` from now applies.
    /// - Returns: The answer, with `usage` to settle in the ledger.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func converse(modelId: String, request: ConverseRequest, deadline: ContinuousClock.Instant? = nil) async throws -> ConverseResponse {
        try await call(modelId: modelId, operation: "converse", body: request, deadline: deadline, as: ConverseResponse.self)
    }

    /// Calls CountTokens: `POST /model/{modelId}/count-tokens` (free; exact input tokens).
    /// - Parameters:
    ///   - modelId: The model id.
    ///   - request: What to count.
    ///   - deadline: When the call must have ended (see ``converse(modelId:request:deadline:)``).
    /// - Returns: The input token count.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func countTokens(modelId: String, request: CountTokensRequest, deadline: ContinuousClock.Instant? = nil) async throws -> Int {
        try await call(modelId: modelId, operation: "count-tokens", body: request, deadline: deadline, as: CountTokensResponse.self).inputTokens
    }

    /// The path for an operation, with the model id percent-encoded once (`:` → `%3A`, `/` → `%2F`).
    public static func path(modelId: String, operation: String) -> String {
        "/model/\(SigV4Signer.uriEncode(modelId, keepSlash: false))/\(operation)"
    }

    // MARK: - Transport

    private func call<Body: Encodable, Answer: Decodable>(
        modelId: String, operation: String, body: Body, deadline: ContinuousClock.Instant?, as: Answer.Type
    ) async throws -> Answer {
        let answer = try await exchange(modelId: modelId, operation: operation, payload: try Self.json(body, operation: operation),
                                        deadline: deadline)
        do {
            return try JSONDecoder().decode(Answer.self, from: answer.body)
        } catch {
            throw BedrockError(kind: .unknown, status: answer.status,
                               message: "the \(operation) answer could not be decoded", source: .transport,
                               underlying: error)
        }
    }

    /// A request body as JSON; a body that cannot be encoded is a client-side validation error.
    static func json(_ body: some Encodable, operation: String) throws -> Data {
        do {
            return try JSONEncoder().encode(body)
        } catch {
            throw BedrockError(kind: .validation, message: "the \(operation) request could not be encoded as JSON",
                               source: .client, underlying: error)
        }
    }

    /// A whole answer: status, head and body.
    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
    }

    /// The largest answer body read whole (Converse answers are a few kilobytes; error bodies are cut to it).
    static let maximumBodyBytes = 32 << 20
    /// The most of an error answer's body read (only its type and message are used).
    static let maximumErrorBodyBytes = 65_536

    /// Signs and sends one request and reads the whole answer.
    /// - Returns: The body and head of a 2xx answer.
    /// - Throws: ``BedrockError`` (an error answer classified, or the transport's failure), or `CancellationError`.
    func exchange(
        modelId: String, operation: String, payload: Data, deadline: ContinuousClock.Instant?,
        contentType: String = "application/json", accept: String = "application/json"
    ) async throws -> Answer {
        let request = signedRequest(
            modelId: modelId, operation: operation, payload: payload, credentials: try await resolveCredentials(),
            contentType: contentType, accept: accept)
        let started = ContinuousClock.now
        let end = callDeadline(deadline, from: started)
        var metadata: Logger.Metadata = ["quotakeeper.model": "\(modelId)", "quotakeeper.operation": "\(operation)"]
        let answer: Answer
        do {
            let response = try await httpClient.execute(request, deadline: Self.nioDeadline(end))
            let limit = (200..<300).contains(response.status.code) ? Self.maximumBodyBytes : Self.maximumErrorBodyBytes
            guard let body = try await withTimeLimit(until: end, { try await Self.collect(response.body, upTo: limit) }) else {
                throw HTTPClientError.deadlineExceeded
            }
            answer = Answer(status: Int(response.status.code), headers: response.headers, body: body)
        } catch {
            try Task.checkCancellation()
            let failure = transportError(error, operation: operation)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call failed", metadata: metadata)
            throw failure
        }
        metadata["quotakeeper.status"] = "\(answer.status)"
        metadata["quotakeeper.latency_ms"] = "\((ContinuousClock.now - started).millisecondsRoundedDown)"
        guard (200..<300).contains(answer.status) else {
            let failure = errorAnswer(status: answer.status, headers: answer.headers, body: answer.body)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call refused", metadata: metadata)
            throw failure
        }
        logger.debug("bedrock call succeeded", metadata: metadata)
        return answer
    }

    /// The bytes of `body`, at most `limit` of them (the rest is left unread; the connection is then closed).
    static func collect(_ body: HTTPClientResponse.Body, upTo limit: Int) async throws -> Data {
        var data = Data()
        for try await chunk in body {
            data.append(contentsOf: chunk.readableBytesView.prefix(limit - data.count))
            if data.count >= limit { break }
        }
        return data
    }

    /// When a call started at `started` must end: the earlier of the caller's deadline and the total timeout.
    func callDeadline(_ deadline: ContinuousClock.Instant?, from started: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let total = started + configuration.timeouts.total
        return deadline.map { min($0, total) } ?? total
    }

    /// The same instant on the event loops' clock (exact to the nanosecond).
    static func nioDeadline(_ deadline: ContinuousClock.Instant) -> NIODeadline {
        NIODeadline.now() + TimeAmount(max(.zero, deadline - .now))
    }

    /// The classified error of a non-2xx answer (only the error type and message of its body are read).
    func errorAnswer(status: Int, headers: HTTPHeaders, body: Data) -> BedrockError {
        configuration.classifier.classify(
            status: status,
            errorTypeHeader: headers.first(name: "x-amzn-ErrorType") ?? Self.bodyField("__type", in: body),
            message: Self.bodyField("message", in: body) ?? Self.bodyField("Message", in: body)
        )
    }

    /// Credentials from the cache, a failure to resolve them thrown as an access-denied ``BedrockError``.
    func resolveCredentials() async throws -> AWSCredentials {
        do {
            return try await credentialsCache.credentials()
        } catch {
            let message = (error as? CredentialsError)?.message ?? "credentials could not be resolved"
            throw BedrockError(kind: .accessDenied, message: message, source: .client, underlying: error)
        }
    }

    func signedRequest(
        modelId: String, operation: String, payload: Data, credentials: AWSCredentials,
        contentType: String = "application/json", accept: String = "application/json", extraHeaders: [(String, String)] = []
    ) -> HTTPClientRequest {
        let endpoint = configuration.resolvedEndpoint
        let basePath = endpoint.path.hasSuffix("/") ? String(endpoint.path.dropLast()) : endpoint.path
        let path = basePath + Self.path(modelId: modelId, operation: operation)
        var hostHeader = endpoint.host ?? ""
        if let port = endpoint.port, !(endpoint.scheme == "https" && port == 443), !(endpoint.scheme == "http" && port == 80) {
            hostHeader += ":\(port)"
        }
        let unsigned = SigV4Signer.Request(
            method: "POST",
            path: path,
            headers: [SigV4Signer.Header("Host", hostHeader), SigV4Signer.Header("Content-Type", contentType)]
                + extraHeaders.map { SigV4Signer.Header($0.0, $0.1) },
            body: payload
        )
        let signed = signer.sign(unsigned, credentials: credentials, date: Date())
        var components = URLComponents()
        components.scheme = endpoint.scheme
        components.host = endpoint.host
        components.port = endpoint.port
        components.percentEncodedPath = path
        var request = HTTPClientRequest(url: components.url!.absoluteString)
        request.method = .POST
        request.body = .bytes(ByteBuffer(data: payload))
        for header in signed.headers {
            request.headers.replaceOrAdd(name: header.name, value: header.value)
        }
        request.headers.replaceOrAdd(name: "Accept", value: accept)
        return request
    }

    /// A string field of a JSON error body (only that field: the rest of a body is never kept).
    static func bodyField(_ name: String, in data: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let value = object[name] as? String
        else { return nil }
        return String(value.prefix(1_024))
    }

    /// The classified error of a transport failure (async-http-client's and NIO's errors).
    func transportError(_ error: any Error, operation: String) -> BedrockError {
        if let bedrock = error as? BedrockError { return bedrock }
        let timeouts = configuration.timeouts
        func failure(_ kind: BedrockErrorKind, _ message: String) -> BedrockError {
            BedrockError(kind: kind, message: "the \(operation) call \(message)", source: .transport, underlying: error)
        }
        if case ChannelError.connectTimeout? = error as? ChannelError {
            return failure(.timeout, "could not connect within \(timeouts.connect)")
        }
        switch error as? HTTPClientError {
        case .deadlineExceeded?: return failure(.timeout, "passed its deadline")
        case .readTimeout?, .writeTimeout?: return failure(.timeout, "timed out (no bytes for \(timeouts.idle))")
        case .connectTimeout?: return failure(.timeout, "could not connect within \(timeouts.connect)")
        case .getConnectionFromPoolTimeout?:
            return failure(.tooManyConnections, "found no free connection within \(timeouts.connect): all \(configuration.pool.maxConnectionsPerHost) of the pool were busy (raise pool.maxConnectionsPerHost)")
        default: return failure(.connectionFailed, "failed in transport (\(Self.describe(error)))")
        }
    }

    /// A short name for a transport error (its type and code only: never a URL's query, a header or a body).
    static func describe(_ error: any Error) -> String {
        switch error {
        case let http as HTTPClientError: return "HTTPClientError \(http.shortDescription)"
        case let io as IOError: return "IOError errno \(io.errnoCode)"
        default: return "\(type(of: error))"
        }
    }
}
