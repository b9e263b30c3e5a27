import BedrockErrors
import Foundation
import Synchronization

/// The uncoordinated mode: what the article recommends, per process. Nothing is shared between instances.
///
/// - retries with exponential backoff on throttling and 503s: 5 tries, 1 s base, 60 s cap, up to 10% jitter;
/// - a sliding 60 s token limiter sized to this app's share of the TPM quota (`TokenAwareRateLimiter`): it is
///   asked with the estimate (input + maxTokens) and records the usage Bedrock reported;
/// - a circuit breaker that opens after 5 consecutive failures for 60 s, then lets one call test the model.
///
/// Every duration is time-scaled like the quota window.
struct ArticleClient: Sendable {
    let settings: FleetSettings
    let limiter: TokenWindowLimiter?
    let breaker: ArticleCircuitBreaker
    let observations: ClientObservations

    static let maximumTries = 5

    init(settings: FleetSettings, observations: ClientObservations) {
        self.settings = settings
        self.observations = observations
        let share = settings.quotaTPM.map { $0 / max(1, settings.apps.count) }
        limiter = share.map { TokenWindowLimiter(limit: $0, window: settings.wall(60)) }
        breaker = ArticleCircuitBreaker(failureThreshold: 5, openDuration: settings.wall(60), observations: observations)
    }

    /// Runs one request the article's way; returns the attempts made, or throws the last error.
    func call(app: AppSpec, _ operation: @Sendable () async throws -> Int) async throws -> Int {
        if let limiter { try await limiter.waitForRoom(app.heldTokens) }
        var attempt = 0
        while true {
            attempt += 1
            try breaker.allowCall()
            do {
                let usedTokens = try await operation()
                breaker.recordSuccess()
                limiter?.record(usedTokens)
                return attempt
            } catch let error as BedrockError {  // already counted in `observations` by the caller's operation
                breaker.recordFailure()
                let retryable = error.errorType == "ThrottlingException" || error.status == 503
                guard retryable, attempt < Self.maximumTries else { throw error }
                let delay = min(1.0 * pow(2, Double(attempt - 1)), 60)
                try await Task.sleep(for: settings.wall(delay + Double.random(in: 0...(delay * 0.1))))
            }
        }
    }
}

/// The article's `TokenAwareRateLimiter`: token usage over a sliding window, a yes/no for the next request.
final class TokenWindowLimiter: Sendable {
    let limit: Int
    let window: Duration
    private let usage = Mutex<[(at: ContinuousClock.Instant, tokens: Int)]>([])

    init(limit: Int, window: Duration) {
        self.limit = limit
        self.window = window
    }

    /// Waits until `estimatedTokens` fit in this process's share (the caller's retry-later loop).
    func waitForRoom(_ estimatedTokens: Int) async throws {
        while true {
            let now = ContinuousClock.now
            let wait: Duration? = usage.withLock { entries in
                entries.removeAll { $0.at < now - window }
                let current = entries.reduce(0) { $0 + $1.tokens }
                if current + estimatedTokens <= limit || entries.isEmpty { return nil }
                return entries[0].at + window - now
            }
            guard let wait else { return }
            try await Task.sleep(for: max(wait, .milliseconds(5)))
        }
    }

    func record(_ tokens: Int) {
        let now = ContinuousClock.now
        usage.withLock { $0.append((now, tokens)) }
    }
}

/// The article's `CircuitBreaker`: every exception counts; opens after `failureThreshold` in a row.
final class ArticleCircuitBreaker: Sendable {
    private enum State { case closed, open(until: ContinuousClock.Instant), halfOpen }
    private let state = Mutex<(state: State, failures: Int)>((.closed, 0))
    let failureThreshold: Int
    let openDuration: Duration
    let observations: ClientObservations

    init(failureThreshold: Int, openDuration: Duration, observations: ClientObservations) {
        self.failureThreshold = failureThreshold
        self.openDuration = openDuration
        self.observations = observations
    }

    /// Throws `CircuitOpen` while open; after the open time, lets calls through half-open.
    func allowCall() throws {
        try state.withLock { current in
            if case .open(let until) = current.state {
                guard ContinuousClock.now >= until else { throw CircuitOpen() }
                current.state = .halfOpen
            }
        }
    }

    func recordSuccess() { state.withLock { $0 = (.closed, 0) } }

    func recordFailure() {
        let opened = state.withLock { current -> Bool in
            current.failures += 1
            guard current.failures >= failureThreshold else { return false }
            let wasOpen: Bool
            if case .open = current.state { wasOpen = true } else { wasOpen = false }
            current.state = .open(until: ContinuousClock.now + openDuration)
            return !wasOpen
        }
        if opened { observations.breakerOpened() }
    }
}

/// "Circuit breaker is OPEN": the local breaker refused the call.
struct CircuitOpen: Error, CustomStringConvertible {
    var description: String { "circuit breaker is open" }
}
