import TimeLimit

/// One Bedrock quota scope: a model or inference-profile id in a Region (in-Region, geo and global
/// profiles are separate budgets). It is also the target of one shared circuit breaker.
public struct BudgetID: Hashable, Sendable, CustomStringConvertible {
    /// The model or inference-profile id, e.g. `us.anthropic.claude-sonnet-4-20250514-v1:0`.
    public var model: String
    /// The source Region, e.g. `us-east-1`.
    public var region: String

    public init(model: String, region: String) {
        self.model = model
        self.region = region
    }

    /// `<model>@<region>`: the name inside the budget's Redis hash tag.
    public var description: String { "\(model)@\(region)" }
}

/// Whether a caller may use a budget's whole limit or only its batch share.
public enum Priority: String, Sendable, Hashable, CaseIterable {
    /// May use the whole (effective) limit.
    case interactive
    /// May use only `batchCeiling` of each limit, so bulk jobs cannot starve users.
    case batch
}

/// A budget's limits and ledger settings. Every limit is optional; set at least one.
///
/// Instances seed these into Redis at start (only if absent); `QuotaLedger.updateBudget(_:)` replaces them,
/// so an operator can change a quota live for the whole fleet.
public struct BudgetConfiguration: Sendable, Hashable {
    /// Requests and tokens per sliding window, and tokens per day.
    public struct Limits: Sendable, Hashable {
        /// Requests per window (RPM for the default 60 s window); nil = no request limit.
        public var requestsPerWindow: Int?
        /// Input + output tokens per window (TPM for the default window); nil = no token limit.
        public var tokensPerWindow: Int?
        /// Tokens per day window; nil = none (Bedrock's default is TPM x 1440).
        public var tokensPerDay: Int?

        public init(requestsPerWindow: Int? = nil, tokensPerWindow: Int? = nil, tokensPerDay: Int? = nil) {
            self.requestsPerWindow = requestsPerWindow
            self.tokensPerWindow = tokensPerWindow
            self.tokensPerDay = tokensPerDay
        }
    }

    /// An optional cap on calls in flight at once, with crash-safe leases.
    public struct InFlight: Sendable, Hashable {
        /// Calls admitted and not yet settled or released.
        public var limit: Int
        /// How long a lease lives if its holder never settles (a crashed process).
        public var lease: Duration = .seconds(120)

        public init(limit: Int, lease: Duration = .seconds(120)) {
            self.limit = limit
            self.lease = lease
        }
    }

    /// The budget's waiting line in Redis (docs/ledger.md "Waiting line"): callers that wait for budget
    /// (`QuotaLedger.acquire` with a positive `maxWait`) hold a ticket and are admitted in its order.
    public struct WaitingLine: Sendable, Hashable {
        /// Tickets the line holds at most (1...1000); a waiter that finds it full waits without a ticket.
        public var capacity: Int = 256
        /// A batch ticket is ordered as if it arrived this much later, and once it has waited this long it
        /// is admitted under the interactive limits: batch waits behind interactive but never longer than
        /// this plus the time to serve the tickets ordered before it. 0...1 year.
        public var batchPromotion: Duration = .seconds(30)
        /// A ticket whose holder has not come back this long after its due time expires (a dead waiter stops
        /// blocking the line then). Positive; cover a loaded process's wake-up delay.
        public var ticketGrace: Duration = .seconds(1)
        /// Per-app share weights within a class (0.01...100; default 1): with equal demand, an app of weight 2
        /// gets twice the admissions of an app of weight 1.
        public var appWeights: [String: Double] = [:]

        public init(
            capacity: Int = 256, batchPromotion: Duration = .seconds(30), ticketGrace: Duration = .seconds(1),
            appWeights: [String: Double] = [:]
        ) {
            self.capacity = capacity
            self.batchPromotion = batchPromotion
            self.ticketGrace = ticketGrace
            self.appWeights = appWeights
        }
    }

    /// The budget this configures.
    public var id: BudgetID
    public var limits: Limits
    /// Length of the sliding window the request and token limits apply to.
    public var window: Duration = .seconds(60)
    /// Buckets per window: the ledger's granularity is `window / bucketCount` (1 s by default).
    public var bucketCount: Int = 60
    /// Length of the window `tokensPerDay` applies to.
    public var dayWindow: Duration = .seconds(86_400)
    /// Buckets per day window (15 minutes each by default).
    public var dayBucketCount: Int = 96
    /// The share of every limit that `batch` callers may use.
    public var batchCeiling: Double = 0.8
    /// The share of every limit the ledger admits at all (lowered at run time after unexpected throttles).
    public var effectiveCeiling: Double = 1.0
    /// Per-app caps: an app's share of the window limits (0.001...1).
    public var appCaps: [String: Double] = [:]
    /// An optional limit on calls in flight.
    public var inFlight: InFlight?
    /// How long the per-minute history per budget and app is kept (1 minute to 7 days).
    public var historyRetention: Duration = .seconds(86_400)
    /// How many apps of each minute get their own history row (1...1000): the first `historyApps` apps that
    /// settle in a minute; later apps of that minute share the minute's `otherApps` row.
    public var historyApps: Int = 50
    /// The budget's shared circuit breaker.
    public var breaker = BreakerConfiguration()
    /// The longest time between an admission (Redis's clock) and Bedrock's own admission of the call (the
    /// HTTP hop, connection set-up, a loaded process). The ledger counts it into every window, so no window of
    /// `window` as Bedrock sees it holds more than a limit even when calls arrive late; it costs the hop's
    /// share of the limits' rate. 0...60 s; default 250 ms.
    public var hopMargin: Duration = .milliseconds(250)
    /// The waiting line's settings, stored with the budget in Redis like every other setting (the fleet's
    /// waiting callers all read the same ones).
    public var waitingLine = WaitingLine()

    public init(id: BudgetID, limits: Limits) {
        self.id = id
        self.limits = limits
    }

    /// The ledger's granularity (the bucket length). Limits hold exactly against a continuously sliding window
    /// of `window`; the ledger counts `window + granularity + hopMargin` (rounded up to whole buckets) to do so.
    public var granularity: Duration { window / bucketCount }

    /// Buckets the ledger counts in each window ring: `bucketCount + 1 + ceil(hopMargin / granularity)`.
    public var countedBuckets: Int {
        let granularity = window.millisecondsRoundedUp / Int64(bucketCount)
        let hop = hopMargin.millisecondsRoundedUp
        return bucketCount + 1 + Int((hop + granularity - 1) / max(granularity, 1))
    }
}
