/// A failed Bedrock Runtime call, already classified into QuotaKeeper's taxonomy.
///
/// Carries what the service said (status, error type, message) and never the request or response body,
/// prompts or credentials, so it is safe to log and to put in metrics.
///
/// Build one with ``BedrockErrorClassifier``: from an HTTP answer
/// (``BedrockErrorClassifier/classify(status:errorTypeHeader:message:)``), from a stream exception event
/// (``BedrockErrorClassifier/classify(streamExceptionEvent:message:)``) or from any SDK's error
/// (``BedrockErrorClassifier/classify(_:)``).
public struct BedrockError: Error, Sendable, CustomStringConvertible {
    /// Where the failure was observed.
    public enum Source: String, Sendable, Codable, Hashable {
        /// An HTTP error answer (status and `x-amzn-ErrorType`).
        case http
        /// An exception event inside a response stream (ConverseStream, InvokeModelWithResponseStream).
        case streamEvent = "stream-event"
        /// The transport: connect, timeout, reset, before an answer arrived.
        case transport
        /// Another SDK's error turned into this taxonomy.
        case sdk
        /// The client itself, before anything was sent (missing credentials, an unencodable request).
        case client
    }

    /// The classified kind; its properties say the policy (retry, breaker, fall back).
    public var kind: BedrockErrorKind
    /// The HTTP status, when one was received.
    public var status: Int?
    /// The error type with any `:` suffix and `#` namespace removed, e.g. `ThrottlingException`.
    public var errorType: String?
    /// The service's message (from the `{"message": ...}` body or the SDK), or a description of a transport
    /// failure. Never contains request bodies or credentials.
    public var message: String
    /// Where the failure was observed.
    public var source: Source
    /// The lower-level error, if any (a transport error or the SDK's own error value).
    public var underlying: (any Error & Sendable)?

    /// Creates a classified error.
    /// - Parameters:
    ///   - kind: The classified kind.
    ///   - status: The HTTP status, if any.
    ///   - errorType: The error type (normalised by the caller or by ``BedrockErrorClassifier``).
    ///   - message: The service's message; never a request body.
    ///   - source: Where the failure was observed.
    ///   - underlying: A lower-level error, if any.
    public init(
        kind: BedrockErrorKind,
        status: Int? = nil,
        errorType: String? = nil,
        message: String,
        source: Source = .http,
        underlying: (any Error & Sendable)? = nil
    ) {
        self.kind = kind
        self.status = status
        self.errorType = errorType
        self.message = message
        self.source = source
        self.underlying = underlying
    }

    /// `kind (status errorType): message`, e.g. `throttled-tokens (429 ThrottlingException): Too many tokens...`.
    public var description: String {
        var detail: [String] = []
        if let status { detail.append(String(status)) }
        if let errorType { detail.append(errorType) }
        let parenthesised = detail.isEmpty ? "" : " (\(detail.joined(separator: " ")))"
        return "\(kind.rawValue)\(parenthesised): \(message)"
    }
}

/// An SDK error that can tell QuotaKeeper what the service answered.
///
/// Conform your SDK's error types to it (in your own code) and ``BedrockErrorClassifier/classify(_:)`` will
/// classify them with no further glue. Return `nil` for anything unknown. Example for the AWS SDK for Swift
/// (whose service errors conform to `AWSServiceError` and `HTTPError`), written without importing it here:
///
/// ```swift
/// import AWSBedrockRuntime
/// import BedrockErrors
/// import ClientRuntime
///
/// struct AWSErrorDescription: BedrockErrorDescribing {
///     let error: any Error
///     var bedrockHTTPStatus: Int? { (error as? HTTPError)?.httpResponse.statusCode.rawValue }
///     var bedrockErrorType: String? { (error as? AWSServiceError)?.typeName }
///     var bedrockMessage: String? { (error as? AWSServiceError)?.message }
/// }
/// let classified = classifier.classify(AWSErrorDescription(error: sdkError))
/// ```
///
/// Turn the SDK's own retries off (`retryStrategyOptions.maxRetriesBase = 0`, boto3 `max_attempts=1`) when
/// QuotaKeeper owns retries, so attempts are not multiplied.
public protocol BedrockErrorDescribing {
    /// The HTTP status of the answer, if there was one.
    var bedrockHTTPStatus: Int? { get }
    /// The error type (`ThrottlingException`, or the raw `x-amzn-ErrorType` value; both are accepted).
    var bedrockErrorType: String? { get }
    /// The service's message (not a request body).
    var bedrockMessage: String? { get }
}
