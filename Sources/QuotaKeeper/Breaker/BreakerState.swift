/// The state of a budget's fleet-wide circuit breaker.
public enum BreakerState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Calls flow; outcomes are counted.
    case closed
    /// Calls are refused until the open duration ends.
    case open
    /// A few probe calls fleet-wide test whether the target recovered.
    case halfOpen = "half_open"
    /// An operator opened it (until a time, or until closed).
    case forcedOpen = "forced_open"
    /// Never trips; outcomes are still counted (a dry run).
    case disabled
}
