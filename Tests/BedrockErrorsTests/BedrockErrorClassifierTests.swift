import Foundation
import BedrockErrors
import Testing

@Suite("Bedrock error classification")
struct BedrockErrorClassifierTests {
    let classifier = BedrockErrorClassifier()

    /// Every row of the facts sheet's error table, with the real wire header and message.
    static let wireCases: [(status: Int, header: String, message: String, kind: BedrockErrorKind)] = [
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Too many requests, please wait before trying again.", .throttledRequests),
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Too many tokens, please wait before trying again.", .throttledTokens),
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Too many tokens per day, please wait before trying again.", .throttledDaily),
        (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Model anthropic.claude-haiku-4-5-20251001-v1:0 is currently overloaded. Please try again later.",
         .modelOverloaded),
        (429, "ThrottlingException", "Rate exceeded", .throttledUnknown),
        (429, "ModelNotReadyException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Model is not ready for inference.", .modelNotReady),
        (503, "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Too many connections, please wait before trying again.", .tooManyConnections),
        (503, "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Service temporarily unavailable, please try again.", .serviceUnavailable),
        (503, "ServiceUnavailableException", "Bedrock is unable to process your request.", .serviceUnavailable),
        (500, "InternalServerException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Internal server error", .internalServer),
        (408, "ModelTimeoutException", "Model has timed out in processing the request.", .timeout),
        (424, "ModelErrorException", "The model returned an error.", .modelError),
        (424, "ModelStreamErrorException", "The model stream failed.", .modelError),
        (400, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
         "Malformed input request: #: required key [messages] not found", .validation),
        (403, "AccessDeniedException", "You don't have access to the model with the specified model ID.",
         .accessDenied),
        (403, "InvalidSignatureException", "The request signature we calculated does not match.", .accessDenied),
        (404, "ResourceNotFoundException", "Could not resolve the foundation model.", .notFound),
        (400, "ServiceQuotaExceededException", "Your request exceeds the service quota.", .quotaExceeded),
    ]

    @Test("wire status, x-amzn-ErrorType and message classify as the facts sheet says", arguments: wireCases)
    func wire(_ row: (status: Int, header: String, message: String, kind: BedrockErrorKind)) {
        let error = classifier.classify(status: row.status, errorTypeHeader: row.header, message: row.message)
        #expect(error.kind == row.kind)
        #expect(error.status == row.status)
        #expect(error.errorType?.contains(":") == false)
        #expect(error.message == row.message)
        #expect(error.source == .http)
    }

    @Test("the error type is matched on the part before the first colon and after a # namespace")
    func normalisation() {
        #expect(BedrockErrorClassifier.normalizedErrorType(
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/") == "ThrottlingException")
        #expect(BedrockErrorClassifier.normalizedErrorType("com.amazon.bedrock#ValidationException")
            == "ValidationException")
        #expect(BedrockErrorClassifier.normalizedErrorType("  ") == nil)
        #expect(BedrockErrorClassifier.normalizedErrorType(nil) == nil)
    }

    @Test("stream exception events classify like their HTTP errors", arguments: [
        ("throttlingException", "Too many tokens, please wait before trying again.", BedrockErrorKind.throttledTokens),
        ("serviceUnavailableException", "Service temporarily unavailable, please try again.", .serviceUnavailable),
        ("internalServerException", "oops", .internalServer),
        ("modelStreamErrorException", "stream broke", .modelError),
        ("validationException", "bad", .validation),
        ("modelTimeoutException", "slow", .timeout),
    ])
    func streamEvents(event: String, message: String, kind: BedrockErrorKind) {
        let error = classifier.classify(streamExceptionEvent: event, message: message)
        #expect(error.kind == kind)
        #expect(error.source == .streamEvent)
        #expect(error.status == nil)
        #expect(error.errorType?.first?.isUppercase == true)
    }

    @Test("status alone classifies when there is no error type or message")
    func statusOnly() {
        #expect(classifier.kind(status: 429, errorTypeHeader: nil, message: nil) == .throttledUnknown)
        #expect(classifier.kind(status: 503, errorTypeHeader: nil, message: nil) == .serviceUnavailable)
        #expect(classifier.kind(status: 500, errorTypeHeader: nil, message: nil) == .internalServer)
        #expect(classifier.kind(status: 418, errorTypeHeader: nil, message: nil) == .unknown)
        #expect(classifier.kind(status: nil, errorTypeHeader: nil, message: nil) == .unknown)
    }

    @Test("message-only input still classifies; a rule does not fire for another error type")
    func ruleConstraints() {
        #expect(classifier.kind(status: nil, errorTypeHeader: nil, message: "Too many tokens, please wait")
            == .throttledTokens)
        #expect(classifier.kind(status: 400, errorTypeHeader: "ValidationException",
                                message: "too many tokens in the prompt") == .validation)
    }

    @Test("custom message rules are consulted first and are Codable configuration")
    func customRules() throws {
        let json = #"[{"errorType":"ThrottlingException","messageContains":"slow down, partner","kind":"throttled-requests"}]"#
        let custom = try JSONDecoder().decode([BedrockErrorClassifier.MessageRule].self, from: Data(json.utf8))
        let adapted = BedrockErrorClassifier(messageRules: custom + BedrockErrorClassifier.defaultMessageRules)
        #expect(adapted.kind(status: 429, errorTypeHeader: "ThrottlingException", message: "Slow down, partner!")
            == .throttledRequests)
        #expect(classifier.kind(status: 429, errorTypeHeader: "ThrottlingException", message: "Slow down, partner!")
            == .throttledUnknown)
        #expect(adapted.kind(status: 429, errorTypeHeader: "ThrottlingException", message: "Too many tokens")
            == .throttledTokens)
    }

    @Test("any SDK error is classified through BedrockErrorDescribing without an SDK import")
    func sdkAdapter() {
        struct FakeSDKError: Error, BedrockErrorDescribing {
            var bedrockHTTPStatus: Int? { 429 }
            var bedrockErrorType: String? { "ThrottlingException" }
            var bedrockMessage: String? { "Too many requests, please wait before trying again." }
        }
        struct Opaque: Error {}
        let fromSDK = classifier.classify(FakeSDKError())
        #expect(fromSDK.kind == .throttledRequests)
        #expect(fromSDK.source == .sdk)
        #expect(fromSDK.underlying is FakeSDKError)
        let already = BedrockError(kind: .timeout, message: "t", source: .transport)
        #expect(classifier.classify(already).kind == .timeout)
        let opaque = classifier.classify(Opaque())
        #expect(opaque.kind == .unknown)
        #expect(opaque.message.contains("Opaque"))
    }

    @Test("description names kind, status and type and nothing else")
    func description() {
        let error = BedrockError(kind: .throttledTokens, status: 429, errorType: "ThrottlingException",
                                 message: "Too many tokens, please wait before trying again.")
        #expect(error.description
            == "throttled-tokens (429 ThrottlingException): Too many tokens, please wait before trying again.")
    }
}

@Suite("Bedrock error policy")
struct BedrockErrorKindPolicyTests {
    @Test("quota throttles belong to the ledger and never trip a breaker")
    func quotaThrottles() {
        for kind in BedrockErrorKind.allCases where kind.isQuotaThrottle {
            #expect(!kind.countsAsBreakerFailure, "\(kind)")
            #expect(kind.isRetryable, "\(kind)")
        }
        #expect(Set(BedrockErrorKind.allCases.filter(\.isQuotaThrottle))
            == [.throttledRequests, .throttledTokens, .throttledDaily, .throttledUnknown])
    }

    @Test("breaker failures are exactly 503, 500, overloaded, timeout and not-ready")
    func breakerFailures() {
        #expect(Set(BedrockErrorKind.allCases.filter(\.countsAsBreakerFailure))
            == [.serviceUnavailable, .internalServer, .modelOverloaded, .timeout, .modelNotReady])
        #expect(!BedrockErrorKind.tooManyConnections.countsAsBreakerFailure)
    }

    @Test("client faults are never retried and never fall back")
    func clientFaults() {
        for kind in [BedrockErrorKind.validation, .quotaExceeded, .modelError] {
            #expect(!kind.isRetryable, "\(kind)")
            #expect(!kind.shouldFallBack, "\(kind)")
        }
        #expect(!BedrockErrorKind.accessDenied.isRetryable)
        #expect(!BedrockErrorKind.timeout.isRetryable)
    }

    @Test("overload and daily exhaustion fall back to the next target")
    func fallBack() {
        #expect(BedrockErrorKind.modelOverloaded.shouldFallBack)
        #expect(BedrockErrorKind.throttledDaily.shouldFallBack)
        #expect(!BedrockErrorKind.throttledTokens.shouldFallBack)
        #expect(!BedrockErrorKind.serviceUnavailable.shouldFallBack)
        #expect(!BedrockErrorKind.modelNotReady.shouldFallBack)
        #expect(BedrockErrorKind.modelNotReady.isRetryable)
    }

    @Test("kinds round-trip through JSON with stable raw values")
    func codable() throws {
        let data = try JSONEncoder().encode(BedrockErrorKind.allCases)
        #expect(try JSONDecoder().decode([BedrockErrorKind].self, from: data) == BedrockErrorKind.allCases)
        #expect(BedrockErrorKind.throttledTokens.rawValue == "throttled-tokens")
    }
}
