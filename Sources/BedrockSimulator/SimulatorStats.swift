/// Counts of what happened to requests, as the referee saw them.
public struct SimulatorCounters: Sendable, Codable, Equatable {
    /// Converse requests received for the model (every outcome).
    public var received = 0
    /// Requests admitted by the quota check (they held tokens).
    public var admitted = 0
    /// Admitted requests that finished and were charged.
    public var completed = 0
    /// 429 "Too many requests".
    public var throttledRequests = 0
    /// 429 "Too many tokens".
    public var throttledTokens = 0
    /// 429 "Too many tokens per day".
    public var throttledDaily = 0
    /// 429 "Model ... is currently overloaded".
    public var overloaded = 0
    /// 503 "Service temporarily unavailable" (injected).
    public var serviceUnavailable = 0
    /// 503 "Too many connections" (above the concurrent-connection cap).
    public var tooManyConnections = 0
    /// Other injected errors (500, 408, 424, ...).
    public var injectedErrors = 0
    /// Exception events injected in the middle of streamed answers.
    public var streamExceptions = 0
    /// 400 ValidationException for a bad body or parameters.
    public var validationErrors = 0
    /// CountTokens calls (free: never charged, never throttled).
    public var countTokensCalls = 0
    /// Uncached input tokens of completed requests.
    public var inputTokens = 0
    /// Output tokens of completed requests (before burndown).
    public var outputTokens = 0
    /// Cache-read input tokens of completed requests (not charged).
    public var cacheReadInputTokens = 0
    /// Cache-write input tokens of completed requests.
    public var cacheWriteInputTokens = 0
    /// Tokens held at admission (input + cache write + maxTokens).
    public var tokensHeld = 0
    /// Tokens charged at completion (input + cache write + output x burndown).
    public var tokensCharged = 0

    /// All 429s together.
    public var throttled: Int { throttledRequests + throttledTokens + throttledDaily + overloaded }

    /// Creates zeroed counters.
    public init() {}

    mutating func add(_ other: SimulatorCounters) {
        received += other.received
        admitted += other.admitted
        completed += other.completed
        throttledRequests += other.throttledRequests
        throttledTokens += other.throttledTokens
        throttledDaily += other.throttledDaily
        overloaded += other.overloaded
        serviceUnavailable += other.serviceUnavailable
        tooManyConnections += other.tooManyConnections
        injectedErrors += other.injectedErrors
        streamExceptions += other.streamExceptions
        validationErrors += other.validationErrors
        countTokensCalls += other.countTokensCalls
        inputTokens += other.inputTokens
        outputTokens += other.outputTokens
        cacheReadInputTokens += other.cacheReadInputTokens
        cacheWriteInputTokens += other.cacheWriteInputTokens
        tokensHeld += other.tokensHeld
        tokensCharged += other.tokensCharged
    }
}

/// The counters of one simulated second.
public struct SimulatorSecond: Sendable, Codable, Equatable {
    /// Simulated seconds since the simulator started (floor).
    public var second: Int
    /// What happened in that second.
    public var counters: SimulatorCounters
}

/// The limits in force for a model, as the referee applies them.
public struct SimulatorLimits: Sendable, Codable, Equatable {
    /// Requests per quota window, if enforced.
    public var requestsPerMinute: Int?
    /// Tokens per quota window, if enforced.
    public var tokensPerMinute: Int?
    /// Tokens per day window, if enforced.
    public var tokensPerDay: Int?
    /// Output-token multiplier at settlement.
    public var burndownRate: Double
}

/// One model's view in `GET /stats`.
public struct SimulatorModelStats: Sendable, Codable, Equatable {
    /// The limits applied.
    public var limits: SimulatorLimits
    /// Requests currently inside the rolling quota window.
    public var windowRequests: Int
    /// Tokens (holds and charges) currently inside the rolling quota window.
    public var windowTokens: Int
    /// Tokens currently inside the rolling day window.
    public var dayTokens: Int
    /// Highest requests-in-window seen (never above the RPM limit).
    public var peakWindowRequests: Int
    /// Highest tokens-in-window seen, after admissions and settlements. Admission never takes it above TPM;
    /// settlement can, when output x burndown exceeds the maxTokens that was held (as on Bedrock).
    public var peakWindowTokens: Int
    /// Totals since start.
    public var totals: SimulatorCounters
    /// Per simulated second, oldest first, only seconds in which something happened.
    public var seconds: [SimulatorSecond]
}

/// The body of `GET /stats`.
public struct SimulatorStatsSnapshot: Sendable, Codable, Equatable {
    /// Wall-clock seconds since start.
    public var uptimeSeconds: Double
    /// Simulated seconds since start (uptime / timeScale).
    public var simulatedSeconds: Double
    /// Wall-clock seconds per simulated second.
    public var timeScale: Double
    /// Rolling quota window, simulated seconds.
    public var quotaWindowSeconds: Double
    /// The seed in use.
    public var seed: UInt64
    /// Requests being processed now.
    public var inFlight: Int
    /// Most requests processed at once since start.
    public var peakInFlight: Int
    /// Requests that named no known model (404), and other unroutable requests.
    public var unroutedRequests: Int
    /// Requests without an Authorization header (403).
    public var unauthenticatedRequests: Int
    /// Totals over all models.
    public var totals: SimulatorCounters
    /// Per model id.
    public var models: [String: SimulatorModelStats]
}

/// Per-model counters bucketed by simulated second, with bounded retention.
struct ModelStatsRecorder {
    private(set) var totals = SimulatorCounters()
    private var buckets: [Int: SimulatorCounters] = [:]
    let retention: Int

    init(retention: Int) { self.retention = retention }

    mutating func record(second: Int, _ update: (inout SimulatorCounters) -> Void) {
        update(&totals)
        update(&buckets[second, default: SimulatorCounters()])
        if buckets.count > retention + retention / 4 {
            let cutoff = second - retention
            buckets = buckets.filter { $0.key > cutoff }
        }
    }

    func seconds(since: Int? = nil) -> [SimulatorSecond] {
        buckets.keys.filter { $0 >= since ?? .min }.sorted().map { SimulatorSecond(second: $0, counters: buckets[$0]!) }
    }
}
