/// Settings of a budget's fleet-wide circuit breaker (see docs/ledger.md, "Circuit breaker").
public struct BreakerConfiguration: Sendable, Hashable {
    /// The rolling window over which calls and failures are counted.
    public var window: Duration = .seconds(60)
    /// Buckets of that window (5 s each by default).
    public var bucketCount: Int = 12
    /// Opens when at least `minimumCalls` calls in the window failed at this rate or more...
    public var failureRateThreshold: Double = 0.5
    public var minimumCalls: Int = 20
    /// ...or after this many consecutive failures fleet-wide (nil = only the rate rule).
    public var consecutiveFailureThreshold: Int? = 5
    /// Opening also needs failures from this many distinct instances in the window (1 = no quorum).
    public var quorum: Int = 1
    /// How long the first opening lasts; each reopening soon after multiplies it, up to `maximumOpenDuration`.
    public var openDuration: Duration = .seconds(15)
    public var backoffMultiplier: Double = 2
    public var maximumOpenDuration: Duration = .seconds(240)
    /// Probes admitted at once fleet-wide when half-open, and the successes that close the breaker.
    public var halfOpenProbes: Int = 3
    public var successesToClose: Int = 3
    /// A probe's lease: if its holder never reports, another probe is allowed after this.
    public var probeLease: Duration = .seconds(30)
    /// Calls slower than this count as failures (nil = latency never counts).
    public var slowCallThreshold: Duration?

    public init() {}
}
