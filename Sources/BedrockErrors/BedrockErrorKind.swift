/// The kinds of failure a Bedrock Runtime call can end in, as QuotaKeeper tells them apart.
///
/// Each kind carries its policy: whether the ledger owns it (``isQuotaThrottle``), whether it counts
/// against a target's circuit breaker (``countsAsBreakerFailure``), whether the same target may be tried
/// again (``isRetryable``) and whether the call should move on to the next target of its route
/// (``shouldFallBack``). The raw values are stable and used as metric dimensions and in JSON.
public enum BedrockErrorKind: String, Sendable, Codable, CaseIterable, Hashable {
    /// 429 ThrottlingException "Too many requests": the requests-per-minute quota.
    case throttledRequests = "throttled-requests"
    /// 429 ThrottlingException "Too many tokens": the tokens-per-minute quota.
    case throttledTokens = "throttled-tokens"
    /// 429 ThrottlingException "Too many tokens per day": the tokens-per-day quota.
    case throttledDaily = "throttled-daily"
    /// 429 ThrottlingException "Model ... is currently overloaded": shared capacity, not the caller's quota.
    case modelOverloaded = "model-overloaded"
    /// 429 ModelNotReadyException: the model is being brought up; retry shortly.
    case modelNotReady = "model-not-ready"
    /// 503 ServiceUnavailableException (other than "Too many connections").
    case serviceUnavailable = "service-unavailable"
    /// 503 "Too many connections, please wait before trying again.": usually the caller's own pool.
    case tooManyConnections = "too-many-connections"
    /// 500 InternalServerException.
    case internalServer = "internal-server"
    /// 408 ModelTimeoutException, or the client's own request timeout.
    case timeout
    /// 424 ModelErrorException / ModelStreamErrorException: the model failed on this input.
    case modelError = "model-error"
    /// 400 ValidationException: the request is wrong.
    case validation
    /// 403 AccessDeniedException (also signature and credential errors).
    case accessDenied = "access-denied"
    /// 404 ResourceNotFoundException: unknown model or profile.
    case notFound = "not-found"
    /// 400 ServiceQuotaExceededException: a hard quota, not a rate.
    case quotaExceeded = "quota-exceeded"
    /// A 429 ThrottlingException whose message matched no rule: treated as a rate throttle of unknown limit.
    case throttledUnknown = "throttled-unknown"
    /// The connection failed before an HTTP answer arrived (refused, reset, DNS).
    case connectionFailed = "connection-failed"
    /// Anything not recognised.
    case unknown

    /// The ledger owns this failure: a rate quota (RPM, TPM, tokens/day) said no.
    ///
    /// Quota throttles never trip a circuit breaker; the caller waits until the ledger says budget frees up.
    public var isQuotaThrottle: Bool {
        switch self {
        case .throttledRequests, .throttledTokens, .throttledDaily, .throttledUnknown: true
        default: false
        }
    }

    /// The failure says the target is unhealthy, so it counts toward opening the target's circuit breaker.
    ///
    /// True for 503 service-unavailable, 500 internal-server, model-overloaded, timeout and model-not-ready.
    /// "Too many connections" does not count: it is usually the caller's own connection pool.
    public var countsAsBreakerFailure: Bool {
        switch self {
        case .serviceUnavailable, .internalServer, .modelOverloaded, .timeout, .modelNotReady: true
        default: false
        }
    }

    /// The same request may succeed if sent again to the same target later (after a backoff or ledger wait).
    ///
    /// False for errors where sending the same request again cannot help (validation, access, not-found,
    /// hard quota, model error) and for timeouts, which SDKs do not retry because the work may have been done
    /// and charged.
    public var isRetryable: Bool {
        switch self {
        case .throttledRequests, .throttledTokens, .throttledDaily, .throttledUnknown,
             .modelOverloaded, .modelNotReady, .serviceUnavailable, .tooManyConnections,
             .internalServer, .connectionFailed:
            true
        case .timeout, .modelError, .validation, .accessDenied, .notFound, .quotaExceeded, .unknown:
            false
        }
    }

    /// The call should move on to the next target of its route at once rather than wait on this one.
    ///
    /// True for model-overloaded (capacity, not quota: another model or Region is likely free), for
    /// tokens-per-day exhaustion (it will not free up within a request's deadline), timeout (not retried, as
    /// the work may have been done), and for target-specific refusals (not-found, access-denied). Kinds that
    /// are retryable but not listed here (503, 500, model-not-ready, minute throttles) are retried on the same
    /// target first; whether to fall back once those retries are spent is the call path's decision.
    public var shouldFallBack: Bool {
        switch self {
        case .modelOverloaded, .throttledDaily, .timeout, .notFound, .accessDenied:
            true
        default:
            false
        }
    }

    /// The request itself is at fault; no target will accept it as it is.
    public var isClientFault: Bool {
        switch self {
        case .validation, .quotaExceeded: true
        default: false
        }
    }
}
