import Foundation

/// A budget as stored in Redis right now: configuration, usage per window and bucket, apps, breaker.
/// Decoded from `ledger_read`'s JSON (see docs/ledger.md).
public struct BudgetStatus: Sendable, Hashable, Decodable {
    /// The stored settings, by their `ledger_configure` names (`rpm`, `tpm`, `tpd`, `win`, `n`, `b_open`, ...;
    /// 0 = an optional setting that is not set).
    public var settings: [String: Double]
    /// Redis time of the read, in ms since 1970.
    public var nowMilliseconds: Int64
    /// Changes when the budget is seeded, its geometry changes or its usage is reset.
    public var epoch: Int64
    /// Reservations admitted since the budget was created.
    public var reservations: Int64
    public var window: WindowUsage
    public var day: WindowUsage
    /// Capped apps: cap and usage in the window.
    public var apps: [String: AppUsage]
    /// The waiting line's app weights (`w:<app>`; apps not named weigh 1). Its capacity, promotion and grace
    /// are `settings` `lcap`, `lprom` and `lgrace`.
    public var lineWeights: [String: Double]
    /// Leases of calls in flight.
    public var inFlight: Int
    public var breaker: BreakerStatus

    /// Usage of one ring (the sliding window, or the day window).
    public struct WindowUsage: Sendable, Hashable, Decodable {
        public var windowMilliseconds: Int64
        public var granularityMilliseconds: Int64
        public var requests: Int?
        public var tokens: Int
        /// Buckets holding usage, oldest first (the newest bucket is always listed). Read after the totals, from
        /// the ring's slots in chunks (`QuotaLedger.status(of:)`): under traffic they may differ from the totals
        /// by the calls in between.
        public var buckets: [Bucket] = []
        /// Where the ring's buckets are (`ledger_read`'s `slots`).
        var slots: RingSlots

        enum CodingKeys: String, CodingKey {
            case windowMilliseconds = "window_ms", granularityMilliseconds = "granularity_ms", requests, tokens, slots
        }
    }

    /// A ring's layout as `ledger_read` reports it: bucket `a` lives in the ledger hash's field
    /// `<prefix><a % span>` (3 little-endian doubles: a, counter 1, counter 2; another stored bucket is stale),
    /// except the stored head bucket, whose counters are `headCounts`; buckets up to `current - span` have left.
    struct RingSlots: Sendable, Hashable, Decodable {
        var prefix: String
        var span: Int64
        var head: Int64
        var headCounts: [Double]
        var current: Int64

        enum CodingKeys: String, CodingKey { case prefix, span, head, headCounts = "head_counts", current }
    }

    public struct Bucket: Sendable, Hashable, Decodable {
        public var startMilliseconds: Int64
        public var requests: Int?
        public var tokens: Int

        enum CodingKeys: String, CodingKey { case startMilliseconds = "start_ms", requests, tokens }
    }

    public struct AppUsage: Sendable, Hashable, Decodable {
        public var cap: Double
        public var requests: Int
        public var tokens: Int
    }

    enum CodingKeys: String, CodingKey {
        case settings = "config", nowMilliseconds = "now_ms", epoch, reservations, window, day, apps,
            lineWeights = "line_weights", inFlight = "in_flight", breaker
    }

    /// Decodes `ledger_read`'s reply (cjson writes an empty object for an empty map).
    static func decode(_ json: String) throws -> BudgetStatus {
        try JSONDecoder().decode(BudgetStatus.self, from: Data(json.utf8))
    }
}

/// A budget's breaker as stored in Redis.
public struct BreakerStatus: Sendable, Hashable, Decodable {
    /// The state callers see now (an open breaker whose time is up is half-open).
    public var state: BreakerState
    /// When an open (or timed forced-open) breaker turns half-open, ms since 1970; 0 = not set / indefinite.
    public var untilMilliseconds: Int64
    /// Openings in a row (drives the open-duration backoff).
    public var openings: Int
    public var consecutiveFailures: Int
    public var probeSuccesses: Int
    /// Calls and failures in the breaker's rolling window.
    public var calls: Int
    public var failures: Int
    /// Probe leases outstanding, and instances that reported failures within the window (quorum).
    public var activeProbes: Int
    public var failingInstances: Int

    enum CodingKeys: String, CodingKey {
        case state, untilMilliseconds = "until_ms", openings, consecutiveFailures = "consecutive_failures",
            probeSuccesses = "probe_successes", calls, failures, activeProbes = "active_probes",
            failingInstances = "failing_instances"
    }
}

/// One minute of settled calls of a budget: a row per app for the first `historyApps` apps that settled in the
/// minute, and one row for every later app together (`otherApps`). The totals are exactly what was settled.
public struct HistoryMinute: Sendable, Hashable {
    public var startMilliseconds: Int64
    public var requests: Int
    /// Tokens charged: input + cache write + output x burndown.
    public var tokens: Int
    /// Input tokens (cache writes included) as Bedrock reported them.
    public var inputTokens: Int
    /// Output tokens as Bedrock reported them (before burndown).
    public var outputTokens: Int
    /// The apps with their own row (valid app names only).
    public var apps: [String: Usage]
    /// Every app of the minute beyond the first `historyApps`, together (nil: none).
    public var otherApps: Usage?

    public struct Usage: Sendable, Hashable {
        public var requests: Int
        public var tokens: Int
        public var inputTokens: Int
        public var outputTokens: Int

        public init(requests: Int, tokens: Int, inputTokens: Int = 0, outputTokens: Int = 0) {
            self.requests = requests
            self.tokens = tokens
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
        }

        static func + (lhs: Usage, rhs: Usage) -> Usage {
            Usage(
                requests: lhs.requests + rhs.requests, tokens: lhs.tokens + rhs.tokens,
                inputTokens: lhs.inputTokens + rhs.inputTokens, outputTokens: lhs.outputTokens + rhs.outputTokens)
        }
    }

    /// The minute starting at `startMilliseconds` from its rows (app nil = the `other` row); nil if no call was
    /// settled in it.
    init?(startMilliseconds: Int64, rows: [(app: String?, usage: Usage)]) {
        let total = rows.reduce(Usage(requests: 0, tokens: 0)) { $0 + $1.usage }
        guard total.requests > 0 else { return nil }
        self.startMilliseconds = startMilliseconds
        requests = total.requests
        tokens = total.tokens
        inputTokens = total.inputTokens
        outputTokens = total.outputTokens
        apps = [:]
        for row in rows {
            if let app = row.app { apps[app] = row.usage } else { otherApps = row.usage }
        }
    }
}
