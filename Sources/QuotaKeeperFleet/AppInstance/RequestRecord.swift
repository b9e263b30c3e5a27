import Foundation
import Synchronization

/// What happened to one request of an app instance, as its caller saw it.
struct RequestRecord: Codable, Sendable {
    /// Wall milliseconds from the mode's start to the request's arrival.
    var arrivalMilliseconds: Int
    /// Wall milliseconds from arrival to the answer (success or error), waits and retries included.
    var latencyMilliseconds: Int
    /// Wall milliseconds from the mode's start to the first Bedrock attempt (coordinated: when the ledger had
    /// admitted the request); nil when no attempt was made.
    var admittedMilliseconds: Int?
    var succeeded: Bool
    /// The served model (success only).
    var servedBy: String?
    var isFallback: Bool = false
    /// Bedrock calls made.
    var attempts: Int = 0
    /// Input + output tokens Bedrock reported for the successful call (nil: streaming, not recorded).
    var tokens: Int?
    /// The typed error the caller got (failure only), e.g. `CallPathError.deadlineExceeded` or
    /// `BedrockError.throttled-requests`.
    var error: String?
    /// Whether the caller got its answer within the request's deadline.
    var withinDeadline: Bool = true
}

/// Bedrock error kinds seen by one app's calls (every attempt, before any retry), and local breaker openings.
final class ClientObservations: Sendable {
    private let state = Mutex<(kinds: [String: Int], breakerOpenings: Int)>(([:], 0))

    func saw(_ kind: String) { state.withLock { $0.kinds[kind, default: 0] += 1 } }
    func breakerOpened() { state.withLock { $0.breakerOpenings += 1 } }

    var kinds: [String: Int] { state.withLock { $0.kinds } }
    var breakerOpenings: Int { state.withLock { $0.breakerOpenings } }
}

/// An app instance's report to the orchestrator (written as JSON to the path it was given).
struct AppReport: Codable, Sendable {
    var app: String
    var mode: String
    var requests: [RequestRecord]
    /// Error kinds Bedrock answered, counted per attempt (`throttled-requests`, `service-unavailable`, ...).
    var errorsSeen: [String: Int]
    /// Local circuit-breaker openings (uncoordinated mode; the shared breaker is counted by the orchestrator).
    var breakerOpenings: Int
    /// Redis round trips of this instance, from the call path's metrics (coordinated mode).
    var redisRoundTrips = 0
    /// The ledger's answers to this instance's reservation attempts by result (coordinated mode).
    var reservationAnswers: [String: Int] = [:]
}
