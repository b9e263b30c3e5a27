import QuotaKeeperRedis

/// An error of the ledger or breaker API.
public struct LedgerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        init(_ name: String) { self.name = name }
        public var description: String { name }

        /// An argument was refused (negative or absurd token counts, a bad app name, ...).
        public static let invalidArgument = Code("invalidArgument")
        /// A budget configuration was refused (zero limits, a window under its granularity, ...).
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// The budget is neither in Redis nor in this ledger's configurations.
        public static let unknownBudget = Code("unknownBudget")
        /// A limit (or the breaker) refused the call; `denial` says which and when to retry.
        public static let budgetExhausted = Code("budgetExhausted")
        /// Redis failed or did not answer; `underlying` is the `RedisError`. A reservation whose reply was lost
        /// may still be held: it stays counted until it leaves the window (the ledger errs toward counting more).
        public static let storeUnavailable = Code("storeUnavailable")
        /// A waiting caller's turn (its place in the budget's waiting line, or the limit's retry-after) comes
        /// after its `maxWait`: it left the line at once; `denial` says when it would have been due.
        public static let waitBeyondDeadline = Code("waitBeyondDeadline")
        /// A settle or release named a reservation already settled or released: nothing changed.
        public static let alreadySettled = Code("alreadySettled")
        /// A settle or release named a reservation the ledger has no record of (never admitted, its record
        /// expired with its lease and window, or Redis lost its state): nothing changed.
        public static let unknownReservation = Code("unknownReservation")
        /// A script answered something this version does not understand.
        public static let unexpectedReply = Code("unexpectedReply")
    }

    public var code: Code
    public var message: String
    /// For `.budgetExhausted`: the limit that refused, the usage seen and the time until it fits.
    public var denial: Denial?
    public var underlying: (any Error & Sendable)?

    public init(code: Code, message: String, denial: Denial? = nil, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.denial = denial
        self.underlying = underlying
    }

    public var description: String { "LedgerError.\(code): \(message)" }
}

/// Why a reservation was refused.
public struct Denial: Sendable, Hashable, CustomStringConvertible {
    /// The limit that refused.
    public enum Reason: String, Sendable, Hashable {
        case requestsPerWindow = "rpm"
        case tokensPerWindow = "tpm"
        case tokensPerDay = "tpd"
        /// A batch caller hit the batch share of a limit that interactive callers may still use.
        case batchCeiling = "batch_ceiling"
        /// The app's own cap.
        case appCap = "app_cap"
        case inFlight = "in_flight"
        /// The budget's circuit breaker is open (or has no free half-open probe).
        case breakerOpen = "breaker_open"
        /// Callers waiting in the budget's line come first (a caller that does not wait is refused while
        /// tickets are ahead of it; one that waits gets a ticket instead).
        case waiters
    }

    public var budget: BudgetID
    public var reason: Reason
    /// What the limit counts: `requests`, `tokens`, `day_tokens`, `in_flight`, `breaker` or `line`.
    public var dimension: String
    /// The usage the ledger saw in the window (probes in flight for the breaker).
    public var usage: Int
    /// The limit applied (after the effective and batch ceilings).
    public var limit: Int
    /// When enough budget frees up, exact to the ledger's granularity; nil = never at this priority (the
    /// request alone exceeds the limit, or the breaker is forced open until an operator closes it).
    public var retryAfter: Duration?

    public var description: String {
        let wait = retryAfter.map { "retry after \($0)" } ?? "will not fit"
        return "\(budget): \(reason.rawValue) (\(dimension) \(usage) of \(limit)), \(wait)"
    }
}
