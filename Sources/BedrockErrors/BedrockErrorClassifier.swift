import Foundation

/// Turns what Bedrock answered into a ``BedrockErrorKind``.
///
/// Classification order:
/// 1. the first matching ``MessageRule`` (configurable, so a changed or new service message can be mapped
///    without a code change);
/// 2. the error type (the `x-amzn-ErrorType` header up to its first `:`, the body's `__type` after `#`, an
///    SDK's type name, or a stream exception event name such as `throttlingException`);
/// 3. the HTTP status alone.
///
/// A `ThrottlingException` whose message matches no rule becomes ``BedrockErrorKind/throttledUnknown``.
///
/// Wiring another SDK: either conform a wrapper to ``BedrockErrorDescribing`` and call ``classify(_:)``, or
/// pull the three fields out yourself and call ``classify(status:errorTypeHeader:message:)``. With boto3's
/// `ClientError` that is `e.response["ResponseMetadata"]["HTTPStatusCode"]`, `e.response["Error"]["Code"]`
/// and `e.response["Error"]["Message"]`; with the AWS SDK for Swift, `HTTPError.httpResponse.statusCode`,
/// `AWSServiceError.typeName` and `AWSServiceError.message`.
public struct BedrockErrorClassifier: Sendable {
    /// Maps a message fragment (optionally restricted to an error type and status) to a kind.
    ///
    /// A constraint left `nil` matches anything; a constraint is also satisfied when the input does not
    /// carry that field at all (an SDK that hides the status, say), so message-only input still classifies.
    public struct MessageRule: Sendable, Codable, Hashable {
        /// The error type this rule applies to (compared case-insensitively, after normalisation), or nil.
        public var errorType: String?
        /// The HTTP status this rule applies to, or nil.
        public var status: Int?
        /// A fragment looked for in the message, case-insensitively.
        public var messageContains: String
        /// The kind assigned when the rule matches.
        public var kind: BedrockErrorKind

        /// Creates a rule.
        /// - Parameters:
        ///   - errorType: Restrict to this error type (e.g. `ThrottlingException`), or nil for any.
        ///   - status: Restrict to this HTTP status, or nil for any.
        ///   - messageContains: Case-insensitive message fragment.
        ///   - kind: The kind to assign.
        public init(errorType: String? = nil, status: Int? = nil, messageContains: String, kind: BedrockErrorKind) {
            self.errorType = errorType
            self.status = status
            self.messageContains = messageContains
            self.kind = kind
        }
    }

    /// The rules for the messages Bedrock is known to send (see the facts sheet), most specific first.
    public static let defaultMessageRules: [MessageRule] = [
        MessageRule(errorType: "ThrottlingException", status: 429, messageContains: "tokens per day", kind: .throttledDaily),
        MessageRule(errorType: "ThrottlingException", status: 429, messageContains: "too many tokens", kind: .throttledTokens),
        MessageRule(errorType: "ThrottlingException", status: 429, messageContains: "too many requests", kind: .throttledRequests),
        MessageRule(errorType: "ThrottlingException", status: 429, messageContains: "currently overloaded", kind: .modelOverloaded),
        MessageRule(errorType: "ServiceUnavailableException", status: 503, messageContains: "too many connections", kind: .tooManyConnections),
    ]

    /// Error type names (lower-cased) and their kinds. Covers Bedrock's own exceptions, the generic AWS
    /// throttling and authentication codes, and the stream exception event names (which differ only in case).
    public static let kindsByErrorType: [String: BedrockErrorKind] = [
        "throttlingexception": .throttledUnknown,
        "toomanyrequestsexception": .throttledUnknown,
        "throttling": .throttledUnknown,
        "throttledexception": .throttledUnknown,
        "requestlimitexceeded": .throttledUnknown,
        "requestthrottled": .throttledUnknown,
        "requestthrottledexception": .throttledUnknown,
        "slowdown": .throttledUnknown,
        "modelnotreadyexception": .modelNotReady,
        "serviceunavailableexception": .serviceUnavailable,
        "serviceunavailable": .serviceUnavailable,
        "internalserverexception": .internalServer,
        "internalfailure": .internalServer,
        "internalservererror": .internalServer,
        "modeltimeoutexception": .timeout,
        "requesttimeout": .timeout,
        "requesttimeoutexception": .timeout,
        "modelerrorexception": .modelError,
        "modelstreamerrorexception": .modelError,
        "validationexception": .validation,
        "serializationexception": .validation,
        "accessdeniedexception": .accessDenied,
        "unrecognizedclientexception": .accessDenied,
        "invalidsignatureexception": .accessDenied,
        "incompletesignature": .accessDenied,
        "incompletesignatureexception": .accessDenied,
        "missingauthenticationtoken": .accessDenied,
        "missingauthenticationtokenexception": .accessDenied,
        "expiredtokenexception": .accessDenied,
        "signaturedoesnotmatch": .accessDenied,
        "resourcenotfoundexception": .notFound,
        "servicequotaexceededexception": .quotaExceeded,
    ]

    /// The rules consulted before the error type; the first match wins.
    public var messageRules: [MessageRule]

    /// Creates a classifier.
    /// - Parameter messageRules: Rules consulted first, in order. Defaults to ``defaultMessageRules``; to add
    ///   your own while keeping the defaults, pass `myRules + BedrockErrorClassifier.defaultMessageRules`.
    public init(messageRules: [MessageRule] = BedrockErrorClassifier.defaultMessageRules) {
        self.messageRules = messageRules
    }

    /// Strips an `x-amzn-ErrorType` value or `__type` to its bare name.
    ///
    /// `ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/` and
    /// `com.amazon.bedrock#ThrottlingException` both become `ThrottlingException`; blank input becomes nil.
    /// - Parameter raw: The header value, body `__type`, SDK type name or stream event name.
    public static func normalizedErrorType(_ raw: String?) -> String? {
        guard let raw else { return nil }
        var name = Substring(raw)
        if let colon = name.firstIndex(of: ":") { name = name[..<colon] }
        if let hash = name.lastIndex(of: "#") { name = name[name.index(after: hash)...] }
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Classifies an HTTP error answer.
    /// - Parameters:
    ///   - status: The HTTP status, if known.
    ///   - errorTypeHeader: The `x-amzn-ErrorType` header (or body `__type`, or an SDK's error code), raw.
    ///   - message: The service's message from the body's `message` (or `Message`) field.
    /// - Returns: The kind, by rule, then error type, then status; ``BedrockErrorKind/unknown`` if nothing fits.
    public func kind(status: Int?, errorTypeHeader: String?, message: String?) -> BedrockErrorKind {
        let errorType = Self.normalizedErrorType(errorTypeHeader)
        if let message, let rule = firstRule(status: status, errorType: errorType, message: message) {
            return rule.kind
        }
        if let errorType, let kind = Self.kindsByErrorType[errorType.lowercased()] {
            return kind
        }
        if let status { return Self.kind(forStatus: status) }
        return .unknown
    }

    /// Classifies an HTTP error answer into a ``BedrockError``.
    /// - Parameters:
    ///   - status: The HTTP status, if known.
    ///   - errorTypeHeader: The raw `x-amzn-ErrorType` header (or equivalent).
    ///   - message: The service's message (never pass a request body).
    ///   - source: Where it was observed; `.http` by default.
    ///   - underlying: A lower-level error to keep, if any.
    public func classify(
        status: Int?,
        errorTypeHeader: String?,
        message: String?,
        source: BedrockError.Source = .http,
        underlying: (any Error)? = nil
    ) -> BedrockError {
        BedrockError(
            kind: kind(status: status, errorTypeHeader: errorTypeHeader, message: message),
            status: status,
            errorType: Self.normalizedErrorType(errorTypeHeader),
            message: message ?? "",
            source: source,
            underlying: underlying
        )
    }

    /// Classifies an exception event from a response stream (`throttlingException`,
    /// `serviceUnavailableException`, `internalServerException`, `modelStreamErrorException`,
    /// `validationException`, `modelTimeoutException`), the same way as the HTTP error of that type.
    /// - Parameters:
    ///   - streamExceptionEvent: The event name (`:event-type` or `:exception-type` header value).
    ///   - message: The event payload's `message`.
    public func classify(streamExceptionEvent: String, message: String?) -> BedrockError {
        let errorType = Self.normalizedErrorType(streamExceptionEvent).map(Self.upperCamelCased)
        return BedrockError(
            kind: kind(status: nil, errorTypeHeader: errorType, message: message),
            status: nil,
            errorType: errorType,
            message: message ?? "",
            source: .streamEvent
        )
    }

    /// Classifies any error: a ``BedrockError`` is returned as it is; a ``BedrockErrorDescribing`` value is
    /// classified from its fields; anything else becomes ``BedrockErrorKind/unknown`` with its type name as
    /// the message (its description is not used, as it might quote a body).
    /// - Parameter error: The error to classify.
    public func classify(_ error: any Error) -> BedrockError {
        if let classified = error as? BedrockError { return classified }
        if let described = error as? any BedrockErrorDescribing {
            return classify(
                status: described.bedrockHTTPStatus,
                errorTypeHeader: described.bedrockErrorType,
                message: described.bedrockMessage,
                source: .sdk,
                underlying: error
            )
        }
        return BedrockError(
            kind: .unknown,
            message: "unclassified error of type \(String(reflecting: type(of: error)))",
            source: .sdk,
            underlying: error
        )
    }

    /// The kind implied by an HTTP status alone.
    /// - Parameter status: An HTTP status code.
    public static func kind(forStatus status: Int) -> BedrockErrorKind {
        switch status {
        case 429: .throttledUnknown
        case 503, 502: .serviceUnavailable
        case 500: .internalServer
        case 408, 504: .timeout
        case 424: .modelError
        case 400, 413, 422: .validation
        case 401, 403: .accessDenied
        case 404: .notFound
        default: .unknown
        }
    }

    private func firstRule(status: Int?, errorType: String?, message: String) -> MessageRule? {
        messageRules.first { rule in
            if let ruleStatus = rule.status, let status, ruleStatus != status { return false }
            if let ruleType = rule.errorType, let errorType,
               ruleType.caseInsensitiveCompare(errorType) != .orderedSame {
                return false
            }
            return message.range(of: rule.messageContains, options: .caseInsensitive) != nil
        }
    }

    private static func upperCamelCased(_ name: String) -> String {
        guard let first = name.first else { return name }
        return first.uppercased() + name.dropFirst()
    }
}
