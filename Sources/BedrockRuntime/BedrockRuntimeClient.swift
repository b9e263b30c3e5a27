import BedrockErrors
import Foundation
import TimeLimit
import Logging
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A Bedrock Runtime client without the AWS SDK: Converse, ConverseStream, InvokeModel,
/// InvokeModelWithResponseStream and CountTokens over HTTPS with SigV4.
///
/// Every failure from the service or the transport is thrown as a ``BedrockError`` already classified
/// (so QuotaKeeper's call path can act on ``BedrockErrorKind``); cancellation is thrown as
/// `CancellationError`. Nothing is retried here: retries belong to the caller (QuotaKeeper's call path).
/// Logs go to the given `Logger` at debug level and carry the model id, status, error kind and latency;
/// never prompts, responses or credentials.
///
/// Share one client per process: it owns a URLSession and its connection pool.
public final class BedrockRuntimeClient: Sendable {
    /// The configuration in force.
    public let configuration: BedrockRuntimeConfiguration
    private let session: URLSession
    /// Requests whose answers are event streams (read while they arrive).
    let streaming: StreamingTransport
    private let signer: SigV4Signer
    let logger: Logger
    private let credentialsCache: CachingCredentialsProvider

    /// Creates a client.
    /// - Parameters:
    ///   - configuration: Region, endpoint, credentials, pool and timeouts.
    ///   - logger: Where to log (debug/trace only).
    public init(configuration: BedrockRuntimeConfiguration, logger: Logger = Logger(label: "quotakeeper.bedrock")) {
        self.configuration = configuration
        let sessionConfiguration = URLSessionConfiguration.ephemeral
        sessionConfiguration.httpMaximumConnectionsPerHost = max(1, configuration.pool.maxConnectionsPerHost)
        // FoundationNetworking truncates timeouts to whole seconds (0 would fire at once): round up, min 1 s.
        sessionConfiguration.timeoutIntervalForRequest = configuration.timeouts.idle.wholeSecondsRoundedUp
        sessionConfiguration.timeoutIntervalForResource = configuration.timeouts.total.wholeSecondsRoundedUp + 1
        sessionConfiguration.requestCachePolicy = .reloadIgnoringLocalCacheData
        sessionConfiguration.urlCache = nil
        sessionConfiguration.httpCookieStorage = nil
        sessionConfiguration.httpShouldSetCookies = false
        self.session = URLSession(configuration: sessionConfiguration)
        self.streaming = StreamingTransport(configuration: sessionConfiguration)
        self.signer = SigV4Signer(service: "bedrock", region: configuration.region)
        self.logger = logger
        self.credentialsCache = CachingCredentialsProvider(configuration.credentials, lifetime: configuration.credentialsCacheDuration)
    }

    deinit {
        session.finishTasksAndInvalidate()
    }

    /// Calls Converse: `POST /model/{modelId}/converse`.
    /// - Parameters:
    ///   - modelId: A model id, inference profile id or ARN (`:` and `/` are percent-encoded in the path).
    ///   - request: Messages, system prompts, inference configuration.
    /// - Returns: The answer, with `usage` to settle in the ledger.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func converse(modelId: String, request: ConverseRequest) async throws -> ConverseResponse {
        try await call(modelId: modelId, operation: "converse", body: request, as: ConverseResponse.self)
    }

    /// Calls CountTokens: `POST /model/{modelId}/count-tokens` (free; exact input tokens).
    /// - Parameters:
    ///   - modelId: The model id.
    ///   - request: What to count.
    /// - Returns: The input token count.
    /// - Throws: ``BedrockError`` (classified), or `CancellationError`.
    public func countTokens(modelId: String, request: CountTokensRequest) async throws -> Int {
        try await call(modelId: modelId, operation: "count-tokens", body: request, as: CountTokensResponse.self).inputTokens
    }

    /// The path for an operation, with the model id percent-encoded once (`:` → `%3A`, `/` → `%2F`).
    public static func path(modelId: String, operation: String) -> String {
        "/model/\(SigV4Signer.uriEncode(modelId, keepSlash: false))/\(operation)"
    }

    // MARK: - Transport

    private func call<Body: Encodable, Answer: Decodable>(
        modelId: String, operation: String, body: Body, as: Answer.Type
    ) async throws -> Answer {
        let (data, http) = try await exchange(modelId: modelId, operation: operation, payload: try Self.json(body, operation: operation))
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw BedrockError(kind: .unknown, status: http.statusCode,
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

    /// Signs and sends one request and reads the whole answer.
    /// - Returns: The body and head of a 2xx answer.
    /// - Throws: ``BedrockError`` (an error answer classified, or the transport's failure), or `CancellationError`.
    func exchange(
        modelId: String, operation: String, payload: Data,
        contentType: String = "application/json", accept: String = "application/json"
    ) async throws -> (Data, HTTPURLResponse) {
        let urlRequest = signedRequest(
            modelId: modelId, operation: operation, payload: payload, credentials: try await resolveCredentials(),
            contentType: contentType, accept: accept)
        let started = ContinuousClock.now
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await send(urlRequest)
        } catch {
            try Task.checkCancellation()
            let failure = Self.transportError(error, operation: operation)
            logger.debug("bedrock call failed", metadata: [
                "quotakeeper.model": "\(modelId)", "quotakeeper.operation": "\(operation)",
                "quotakeeper.error_kind": "\(failure.kind.rawValue)",
            ])
            throw failure
        }
        let elapsed = ContinuousClock.now - started
        guard let http = response as? HTTPURLResponse else {
            throw BedrockError(kind: .unknown, message: "the answer was not HTTP", source: .transport)
        }
        var metadata: Logger.Metadata = [
            "quotakeeper.model": "\(modelId)", "quotakeeper.operation": "\(operation)",
            "quotakeeper.status": "\(http.statusCode)", "quotakeeper.latency_ms": "\(elapsed.millisecondsRoundedDown)",
        ]
        guard (200..<300).contains(http.statusCode) else {
            let failure = errorAnswer(http, body: data)
            metadata["quotakeeper.error_kind"] = "\(failure.kind.rawValue)"
            logger.debug("bedrock call refused", metadata: metadata)
            throw failure
        }
        logger.debug("bedrock call succeeded", metadata: metadata)
        return (data, http)
    }

    /// The classified error of a non-2xx answer (only the error type and message of its body are read).
    func errorAnswer(_ http: HTTPURLResponse, body: Data) -> BedrockError {
        configuration.classifier.classify(
            status: http.statusCode,
            errorTypeHeader: http.value(forHTTPHeaderField: "x-amzn-ErrorType") ?? Self.bodyField("__type", in: body),
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

    /// Sends a request, enforcing ``BedrockRuntimeConfiguration/Timeouts/total`` with sub-second precision
    /// (FoundationNetworking on Linux truncates its own timeouts to whole seconds).
    private func send(_ request: URLRequest) async throws -> (Data, URLResponse) {
        let session = self.session
        let total = configuration.timeouts.total
        guard let answer = try await withTimeLimit(total, { try await session.dataCancellingAsynchronously(for: request) }) else {
            throw URLError(.timedOut)
        }
        return answer
    }

    func signedRequest(
        modelId: String, operation: String, payload: Data, credentials: AWSCredentials,
        contentType: String = "application/json", accept: String = "application/json", extraHeaders: [(String, String)] = []
    ) -> URLRequest {
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
        var request = URLRequest(url: components.url!)
        request.httpMethod = "POST"
        request.httpBody = payload
        request.timeoutInterval = configuration.timeouts.idle.wholeSecondsRoundedUp
        for header in signed.headers where header.name.lowercased() != "host" {
            request.setValue(header.value, forHTTPHeaderField: header.name)
        }
        request.setValue(accept, forHTTPHeaderField: "Accept")
        return request
    }

    /// A string field of a JSON error body (only that field: the rest of a body is never kept).
    static func bodyField(_ name: String, in data: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let value = object[name] as? String
        else { return nil }
        return String(value.prefix(1_024))
    }

    static func transportError(_ error: any Error, operation: String) -> BedrockError {
        let urlError = error as? URLError
        switch urlError?.code {
        case .timedOut?:
            return BedrockError(kind: .timeout, message: "the \(operation) call timed out", source: .transport, underlying: error)
        case .cannotConnectToHost?, .cannotFindHost?, .networkConnectionLost?, .notConnectedToInternet?,
             .dnsLookupFailed?, .secureConnectionFailed?:
            return BedrockError(kind: .connectionFailed,
                                message: "the \(operation) call could not reach the endpoint (\(urlError!.code.rawValue))",
                                source: .transport, underlying: error)
        default:
            return BedrockError(kind: .connectionFailed, message: "the \(operation) call failed in transport",
                                source: .transport, underlying: error)
        }
    }
}

extension Duration {
    var wholeSecondsRoundedUp: TimeInterval {
        max(1, (Double(components.seconds) + Double(components.attoseconds) / 1e18).rounded(.up))
    }
}
