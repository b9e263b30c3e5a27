import TimeLimit

/// Tokens Bedrock reported for a finished call (Converse `usage`, or InvokeModel's token-count headers).
public struct TokenUsage: Sendable, Hashable {
    public var inputTokens: Int
    public var outputTokens: Int
    /// Cache reads are held at admission (Bedrock holds the whole input) and given back at settlement: they do
    /// not count toward the final charge.
    public var cacheReadInputTokens: Int
    /// Cache writes count like input tokens.
    public var cacheWriteInputTokens: Int

    public init(inputTokens: Int, outputTokens: Int, cacheReadInputTokens: Int = 0, cacheWriteInputTokens: Int = 0) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.cacheReadInputTokens = cacheReadInputTokens
        self.cacheWriteInputTokens = cacheWriteInputTokens
    }
}

/// What a call's outcome means to the budget's circuit breaker.
public enum CallOutcome: String, Sendable, Hashable {
    /// Bedrock answered (counts as a success; as a failure if slower than the breaker's slow-call threshold).
    case success
    /// A capacity or availability failure: 503, 500, "model is currently overloaded", timeout, model not ready.
    case failure
    /// Answered, but too slowly to count as healthy.
    case slow
    /// Not the breaker's business: quota throttles (the ledger owns those), validation, access, not found,
    /// or a call that never reached Bedrock.
    case notCounted = "none"
}

/// Budget held for one call. Settle it with what Bedrock charged, or release it if the call never reached
/// Bedrock; both consume it here and its record in Redis, so a reservation is never settled twice (a second
/// settle anywhere gets `LedgerError.alreadySettled` and changes nothing). A reservation never settled (its
/// process crashed) stays counted until it leaves the window, and its in-flight lease expires.
public struct Reservation: ~Copyable, Sendable {
    public let budget: BudgetID
    public let app: String
    public let priority: Priority
    /// The reservation's id (chosen by the caller or a random UUID); it names its record in Redis.
    public let id: String
    /// The ledger's count of admissions when this one was made (per budget and epoch; for display).
    public let sequence: Int64
    /// The ledger's epoch (changes when usage is reset or the window geometry changes).
    public let epoch: Int64
    /// Requests and tokens held.
    public let requests: Int
    public let heldTokens: Int
    /// Whether this call is one of the breaker's half-open probes: report its outcome.
    public let isProbe: Bool
    /// Redis time of the admission, in milliseconds since 1970.
    public let admittedAtMilliseconds: Int64
    /// This process's monotonic time of the admission's reply: with `admittedAtMilliseconds`, Redis's clock
    /// at settlement (for the history minute), whatever this host's wall clock says.
    let admittedAt: ContinuousClock.Instant
    /// For a booking (an admission for a later time, `QuotaLedger.acquire`): how long after the admission's
    /// reply the call could start (`acquire` returns it then); zero for every other admission.
    public let startsIn: Duration
    /// The ticket this call waited with in the budget's line, if it waited with one (`QuotaLedger.acquire`).
    public internal(set) var waitingTicket: WaitingTicket? = nil
    let ledger: QuotaLedger

    /// Charges what Bedrock charged: `input + cache-write + output x burndown(model)`, giving back the rest of
    /// the held tokens at once; reports the outcome to the breaker and the usage to the per-minute history.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_settle`): TIME + GET + HMGET + SETRANGE + HSET + the history's writes,
    /// plus an HMGET when the held bucket is no longer the newest; a ZREM with an in-flight limit or for a
    /// probe. Settlements of a budget that overlap in time share one `ledger_settle_many` call instead
    /// (``QuotaLedger/settleCoalescer``; docs/ledger.md, "Batched settlements"). Retried with the same id when
    /// Redis's answer is lost (at most once counted).
    /// - Parameters:
    ///   - usage: the tokens Bedrock reported.
    ///   - outcome: what the call means to the breaker.
    ///   - latency: how long the call took (for the breaker's slow-call rule).
    /// - Throws: `LedgerError` (`.invalidArgument` for negative or absurd counts, `.storeUnavailable`,
    ///   `.alreadySettled`, `.unknownReservation`); if it throws, the held tokens stay counted until they leave
    ///   the window.
    @discardableResult
    public consuming func settle(
        usage: TokenUsage, outcome: CallOutcome = .success, latency: Duration = .zero
    ) async throws -> Settlement {
        try await ledger.finish(
            ReservationRecord(self), mode: .settle, usage: usage, outcome: outcome, latency: latency)
    }

    /// Gives back the request and every held token: the call never reached Bedrock (or Bedrock did not
    /// charge it). Still reports an outcome to the breaker if given.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_settle` in release mode): TIME + HMGET + HSET (+ HMGET, ZREM as for
    /// `settle`), or a share of a batch as for `settle`.
    /// - Throws: `LedgerError` (`.storeUnavailable`); if it throws, the reservation stays counted until it
    ///   leaves the window.
    @discardableResult
    public consuming func release(outcome: CallOutcome = .notCounted, latency: Duration = .zero) async throws -> Settlement {
        try await ledger.finish(
            ReservationRecord(self), mode: .release, usage: TokenUsage(inputTokens: 0, outputTokens: 0),
            outcome: outcome, latency: latency)
    }
}

/// The copyable fields of a consumed reservation: what names its record (the settle script reads the rest from
/// Redis), the app for logs and whether it was a probe.
struct ReservationRecord: Sendable {
    let budget: BudgetID
    let app: String
    let id: String
    let isProbe: Bool
    let admittedAtMilliseconds: Int64
    let admittedAt: ContinuousClock.Instant

    init(_ reservation: borrowing Reservation) {
        budget = reservation.budget
        app = reservation.app
        id = reservation.id
        isProbe = reservation.isProbe
        admittedAtMilliseconds = reservation.admittedAtMilliseconds
        admittedAt = reservation.admittedAt
    }

    /// The history minute of a settlement now: Redis's clock at the admission plus the monotonic time since.
    var historyMinute: Int64 {
        (admittedAtMilliseconds + (ContinuousClock.now - admittedAt).millisecondsRoundedUp) / 60_000
    }
}

/// What a settlement or release did.
public struct Settlement: Sendable, Hashable {
    /// Tokens charged: `input + cache-write + ceil(output x burndown)` (0 on release).
    public var chargedTokens: Int
    /// Held tokens given back (negative when the charge exceeded what was held: the extra is counted too).
    public var returnedTokens: Int
    /// The breaker's state after the outcome was counted.
    public var breakerState: BreakerState
}

/// A waiting caller's place in a budget's waiting line (docs/ledger.md "Waiting line").
public struct WaitingTicket: Sendable, Hashable {
    /// The ticket's order key (a virtual time in milliseconds): lower tags are admitted first.
    public var tag: Double
    /// Tickets ahead of it when it was issued, plus one (counted up to 129).
    public var position: Int
    /// When, as the line's pace predicts it, the app's next caller of the class would have its turn (from
    /// the reply; nil when the line has no pace yet).
    var nextCallerTurn: Duration? = nil
}
