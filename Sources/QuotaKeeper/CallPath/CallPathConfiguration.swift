import BedrockErrors

/// How the call path retries, waits, falls back and behaves when Redis is away.
public struct CallPathConfiguration: Sendable {
    /// Retries on the same target for capacity failures (503, 500, not ready, too many connections).
    public struct Retry: Sendable {
        /// Attempts per target, the first included.
        public var maximumAttemptsPerTarget: Int = 3
        /// Full jitter: each wait is uniform in [0, min(maximumDelay, baseDelay x 2^(attempt-1))].
        public var baseDelay: Duration = .milliseconds(200)
        public var maximumDelay: Duration = .seconds(5)
        public init() {}
    }

    /// The fleet-wide retry budget per target, kept in Redis (`lua/retry_budget.lua`).
    public struct RetryBudget: Sendable {
        /// Retries may not exceed `ratio` x calls over `window` (fleet-wide) ...
        public var ratio: Double = 0.2
        /// ... but `minimumPerWindow` retries are always allowed, so a quiet fleet can still retry.
        public var minimumPerWindow: Int = 10
        public var window: Duration = .seconds(60)
        public var bucket: Duration = .seconds(10)
        public init() {}
    }

    /// What the call path does when Redis is unreachable or slow.
    public enum StoreFailurePolicy: Sendable, Hashable {
        /// Refuse the call at once with `CallPathError.storeUnavailable`.
        case failClosed
        /// Admit calls against an in-process share of each limit (limit x ceiling / expected instances, over
        /// the budget's own windows) and replay the usage into the ledger when Redis answers again.
        case failOpen(expectedInstances: Int)
    }

    /// The fleet-wide lowering of a budget's effective ceiling when Bedrock throttles a call the ledger
    /// admitted (the real quota is lower than configured): multiplicative decrease, additive recovery.
    public struct AdaptiveCeiling: Sendable {
        public var isEnabled: Bool = true
        /// The ceiling is multiplied by this on each unexpected throttle ...
        public var decreaseFactor: Double = 0.8
        /// ... never below this fraction of the configured limits.
        public var floor: Double = 0.5
        /// After a quiet `recoveryInterval` without unexpected throttles, the ceiling rises by `recoveryStep`.
        public var recoveryStep: Double = 0.05
        public var recoveryInterval: Duration = .seconds(60)
        public init() {}
    }

    public var retry = Retry()
    public var retryBudget = RetryBudget()
    public var adaptiveCeiling = AdaptiveCeiling()
    public var storeFailurePolicy: StoreFailurePolicy = .failClosed
    /// Turns errors the caller's closure throws into Bedrock error kinds (message rules are configurable).
    public var classifier = BedrockErrorClassifier()
    public init() {}
}
