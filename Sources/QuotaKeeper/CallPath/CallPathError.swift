import BedrockErrors

/// Why one target of a route did not serve a call.
public struct TargetFailure: Sendable, CustomStringConvertible {
    public enum Reason: Sendable {
        /// The target's circuit breaker is open; a probe may be allowed after `retryAfter`.
        case breakerOpen(retryAfter: Duration?)
        /// A limit had no room within the wait the caller allows.
        case budgetExhausted(Denial)
        /// Bedrock failed the call `attempts` times; `error` is the last failure.
        case failed(BedrockError, attempts: Int)
        /// A retry was needed but the fleet-wide retry budget is spent.
        case retryBudgetExhausted(BedrockError)
        /// The deadline passed before this target could be tried.
        case deadlineExceeded
        /// Less of the deadline was left than a call on this target is expected to take, so no budget was taken.
        case notEnoughTimeLeft(remaining: Duration, expectedCallTime: Duration)
        /// Redis was unreachable and this target has no configuration to take a local share of (failOpen).
        case storeUnavailable(String)
        /// Redis was unreachable and this instance's local share of the target's limits is spent (failOpen).
        case localShareExhausted
    }

    public var target: BudgetID
    public var reason: Reason

    public init(target: BudgetID, reason: Reason) {
        self.target = target
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .breakerOpen(let retryAfter):
            return "\(target): breaker open" + (retryAfter.map { ", probe in \($0)" } ?? " (until an operator closes it)")
        case .budgetExhausted(let denial):
            return "\(target): \(denial)"
        case .failed(let error, let attempts):
            return "\(target): \(error.kind.rawValue) after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(error.message)"
        case .retryBudgetExhausted(let error):
            return "\(target): fleet retry budget spent after \(error.kind.rawValue)"
        case .deadlineExceeded:
            return "\(target): deadline passed before it could be tried"
        case .notEnoughTimeLeft(let remaining, let expected):
            return "\(target): \(remaining) of the deadline left, less than a call is expected to take (\(expected)); no budget taken"
        case .storeUnavailable(let message):
            return "\(target): the ledger is unreachable and this instance has no configuration for it (\(message))"
        case .localShareExhausted:
            return "\(target): the ledger is unreachable and this instance's local share of the limits is spent"
        }
    }
}

/// A call that no target served, with every target's reason.
public struct CallPathError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// Every target of the route was tried or skipped; `failures` says why for each.
        public static let allTargetsFailed = Code("allTargetsFailed")
        /// Bedrock refused the request itself (validation, hard quota, model error, unknown): not retried.
        public static let nonRetryable = Code("nonRetryable")
        /// The deadline passed, or what was left of it is shorter than a call on the last target takes.
        public static let deadlineExceeded = Code("deadlineExceeded")
        /// Redis is unreachable and the policy is `failClosed` (or the local share is spent).
        public static let storeUnavailable = Code("storeUnavailable")
        /// A streamed call failed after its first content reached the caller (a mid-stream exception event,
        /// a broken stream): not retried; `failures` holds the classified error.
        public static let streamInterrupted = Code("streamInterrupted")
        /// The call itself is malformed (empty route, bad estimate, unknown budget, bad app name).
        public static let invalidRequest = Code("invalidRequest")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// For every target tried or skipped, why it did not serve the call.
    public var failures: [TargetFailure]
    /// The underlying error (a `BedrockError`, `LedgerError` or `RedisError`), when there is one.
    public var underlying: (any Error & Sendable)?

    public init(code: Code, message: String, failures: [TargetFailure] = [], underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.failures = failures
        self.underlying = underlying
    }

    public var description: String {
        (["CallPathError.\(code): \(message)"] + failures.map { "  - \($0)" }).joined(separator: "\n")
    }
}
