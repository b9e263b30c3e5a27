import BedrockErrors
import TimeLimit

/// The call path's policy as pure functions: what to do next, given what happened to an attempt, where the
/// call is on its route, how often the target was tried, the deadline, a reading of the clock and a random
/// fraction for jitter. No Redis, no sleeping, no clock of its own: `CallCoordinator` is the driver that
/// performs each decision. Unit-tested in `Tests/QuotaKeeperCallPathTests/CallPathPolicyTests.swift`.
struct CallPathPolicy: Sendable {
    var retry: CallPathConfiguration.Retry
    var storeFailurePolicy: CallPathConfiguration.StoreFailurePolicy

    /// Where a call is: the route's target `index` of `count`, tried `attempts` times so far.
    struct Position: Sendable, Equatable {
        var index: Int
        var count: Int
        var attempts: Int

        var isLastTarget: Bool { index == count - 1 }
    }

    /// What happened to an attempt on the current target.
    enum Outcome: Sendable {
        /// The ledger refused admission (breaker open, a limit without room within the wait), or the local
        /// share of a fail-open admission did.
        case notAdmitted(TargetFailure.Reason)
        /// The ledger could not be reached.
        case storeUnavailable
        /// Bedrock's call failed (the call's deadline passing is a `timeout`).
        case failed(BedrockError)
        /// The fleet-wide retry budget answered a retry request made after `failure`.
        case fleetRetryAnswer(permitted: Bool, after: BedrockError)
    }

    /// What the driver does next.
    enum Decision: Sendable {
        /// Ask the ledger for admission on the current target, waiting for budget at most `maximumWait`.
        case admit(maximumWait: Duration)
        /// Admit on this instance's share of the target's limits (Redis unreachable, policy `failOpen`).
        case admitOnLocalShare(expectedInstances: Int)
        /// Ask the fleet-wide retry budget for one more attempt on the current target.
        case askFleetForRetry
        /// Call the current target again after `delay`.
        case retry(after: Duration)
        /// Move on to the route's target `index`; the current one did not serve because of `reason`.
        case fallOver(to: Int, because: TargetFailure.Reason)
        /// End the call with `code`; `reason`, when given, is the current target's entry in the failures.
        case fail(CallPathError.Code, because: TargetFailure.Reason?)
        /// The deadline passed before the current target could be tried: end the call with every target
        /// from the current one on marked `deadlineExceeded`.
        case deadlinePassed
    }

    /// Before an attempt on the current target: admit while the deadline leaves time for the call itself,
    /// waiting for budget up to `maximumWaitPerTarget` (nil: on the last target whatever the deadline leaves
    /// after the call, no wait on the others). A caller whose remaining time is less than `expectedCallTime`
    /// takes no budget: its call would end at the deadline inside Bedrock, charged and counted for nothing.
    /// It moves on (a faster target may fit), and on the last target fails `deadlineExceeded`.
    func beforeAttempt(
        at position: Position, now: ContinuousClock.Instant, deadline: ContinuousClock.Instant, maximumWaitPerTarget: Duration?,
        expectedCallTime: Duration = .zero
    ) -> Decision {
        let remaining = deadline - now
        guard remaining > .zero else { return .deadlinePassed }
        let usable = remaining - max(expectedCallTime, .zero)
        guard usable > .zero else {
            let reason = TargetFailure.Reason.notEnoughTimeLeft(remaining: remaining, expectedCallTime: expectedCallTime)
            return position.isLastTarget ? .fail(.deadlineExceeded, because: reason) : .fallOver(to: position.index + 1, because: reason)
        }
        return .admit(maximumWait: min(usable, maximumWaitPerTarget ?? (position.isLastTarget ? usable : .zero)))
    }

    /// The expected time of a call on a target after one more successful call took `observed`: a decaying
    /// maximum (a slower call raises it at once, faster ones lower it by a tenth of the gap each), so one
    /// fast answer does not make the call path take admissions it cannot use.
    static func expectedCallTime(after previous: Duration?, observed: Duration) -> Duration {
        guard let previous, previous > observed else { return observed }
        return previous - (previous - observed) / 10
    }

    /// After an attempt on the current target did not serve the call.
    /// - Parameter randomFraction: uniform in 0...1, for the retry's full jitter.
    func after(_ outcome: Outcome, at position: Position, now: ContinuousClock.Instant, deadline: ContinuousClock.Instant, randomFraction: Double) -> Decision {
        switch outcome {
        case .notAdmitted(let reason):
            return moveOn(from: position, because: reason)
        case .storeUnavailable:
            guard case .failOpen(let instances) = storeFailurePolicy else { return .fail(.storeUnavailable, because: nil) }
            return .admitOnLocalShare(expectedInstances: instances)
        case .failed(let failure):
            let kind = failure.kind
            if kind.isClientFault || kind == .modelError || kind == .unknown {
                return .fail(.nonRetryable, because: .failed(failure, attempts: position.attempts))
            }
            guard kind.isRetryable, !kind.shouldFallBack, position.attempts < retry.maximumAttemptsPerTarget else {
                return moveOn(from: position, because: .failed(failure, attempts: position.attempts))
            }
            return .askFleetForRetry
        case .fleetRetryAnswer(permitted: false, let failure):
            return moveOn(from: position, because: .retryBudgetExhausted(failure))
        case .fleetRetryAnswer(permitted: true, let failure):
            let delay = fullJitterDelay(afterAttempt: position.attempts, randomFraction: randomFraction)
            guard now + delay < deadline else {
                return moveOn(from: position, because: .failed(failure, attempts: position.attempts))
            }
            return .retry(after: delay)
        }
    }

    /// How a failed call's reservation is finished, and what the breaker is told. Bedrock does not charge
    /// throttled or failed requests, so their tokens are released; a timeout or model error may have been
    /// charged, so the worst case is settled (counting more, never less). A call the caller's own deadline
    /// cut short (`byCallerDeadline`) says nothing about the target's health: the breaker is not told.
    static func finishing(_ kind: BedrockErrorKind, byCallerDeadline: Bool) -> (settlesWorstCase: Bool, breaker: CallOutcome) {
        (kind == .timeout || kind == .modelError, kind.countsAsBreakerFailure && !byCallerDeadline ? .failure : .notCounted)
    }

    /// Full jitter: `randomFraction` x min(maximumDelay, baseDelay x 2^(attempt-1)), in whole milliseconds.
    func fullJitterDelay(afterAttempt attempt: Int, randomFraction: Double) -> Duration {
        let base = Double(retry.baseDelay.millisecondsRoundedUp)
        let cap = Double(retry.maximumDelay.millisecondsRoundedUp)
        let ceiling = min(cap, base * Double(1 << min(max(0, attempt - 1), 62)))
        return .milliseconds(Int64(min(max(randomFraction, 0), 1) * ceiling))
    }

    private func moveOn(from position: Position, because reason: TargetFailure.Reason) -> Decision {
        position.isLastTarget ? .fail(.allTargetsFailed, because: reason) : .fallOver(to: position.index + 1, because: reason)
    }
}
