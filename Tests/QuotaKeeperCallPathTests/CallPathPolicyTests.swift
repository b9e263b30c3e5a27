import BedrockErrors
@testable import QuotaKeeper
import Testing

/// The call path's decisions, without Redis, a network or sleeping: every row of docs/call-path.md's table
/// that the policy decides, the deadline's edges and the fleet retry budget.
@Suite("Call path policy (pure decisions)")
struct CallPathPolicyTests {
    let policy = CallPathPolicy(retry: .init(), storeFailurePolicy: .failClosed)  // 3 attempts, 200 ms base, 5 s cap
    let now = ContinuousClock.now
    var deadline: ContinuousClock.Instant { now + .seconds(20) }
    let first = CallPathPolicy.Position(index: 0, count: 3, attempts: 1)
    let last = CallPathPolicy.Position(index: 2, count: 3, attempts: 1)

    func failure(_ kind: BedrockErrorKind) -> BedrockError { BedrockError(kind: kind, message: "m") }

    func after(_ outcome: CallPathPolicy.Outcome, at position: CallPathPolicy.Position, randomFraction: Double = 0.5) -> CallPathPolicy.Decision {
        policy.after(outcome, at: position, now: now, deadline: deadline, randomFraction: randomFraction)
    }

    /// `decision` as a short string, so whole decisions compare exactly.
    func show(_ decision: CallPathPolicy.Decision) -> String {
        switch decision {
        case .admit(let wait): "admit waiting \(wait)"
        case .admitOnLocalShare(let n): "local share of \(n)"
        case .askFleetForRetry: "ask fleet"
        case .retry(let delay): "retry after \(delay)"
        case .fallOver(let index, let reason): "fall over to \(index): \(show(reason))"
        case .fail(let code, let reason): "fail \(code)" + (reason.map { ": \(show($0))" } ?? "")
        case .deadlinePassed: "deadline passed"
        }
    }

    func show(_ reason: TargetFailure.Reason) -> String {
        switch reason {
        case .breakerOpen(let retryAfter): "breaker open \(retryAfter.map { "\($0)" } ?? "nil")"
        case .budgetExhausted(let denial): "budget \(denial.reason.rawValue)"
        case .failed(let error, let attempts): "failed \(error.kind.rawValue) x\(attempts)"
        case .retryBudgetExhausted(let error): "retry budget spent after \(error.kind.rawValue)"
        case .deadlineExceeded: "deadline"
        case .notEnoughTimeLeft(let remaining, let expected): "\(remaining) left < \(expected)"
        case .storeUnavailable: "store unavailable"
        case .localShareExhausted: "local share spent"
        }
    }

    @Test("503, 500, not ready and too many connections: retry on the same target, fleet permitting, then fall over",
          arguments: [BedrockErrorKind.serviceUnavailable, .internalServer, .modelNotReady, .tooManyConnections])
    func capacityFailuresRetryThenFallOver(kind: BedrockErrorKind) {
        #expect(show(after(.failed(failure(kind)), at: first)) == "ask fleet")
        #expect(show(after(.fleetRetryAnswer(permitted: true, after: failure(kind)), at: first)) == "retry after 0.1 seconds")
        let third = CallPathPolicy.Position(index: 0, count: 3, attempts: 3)
        #expect(show(after(.failed(failure(kind)), at: third)) == "fall over to 1: failed \(kind.rawValue) x3")
        #expect(show(after(.failed(failure(kind)), at: CallPathPolicy.Position(index: 2, count: 3, attempts: 3)))
            == "fail allTargetsFailed: failed \(kind.rawValue) x3")
    }

    @Test("quota throttles retry through the ledger on the same target",
          arguments: [BedrockErrorKind.throttledRequests, .throttledTokens, .throttledUnknown])
    func quotaThrottlesRetry(kind: BedrockErrorKind) {
        #expect(show(after(.failed(failure(kind)), at: first)) == "ask fleet")
    }

    @Test("overload, daily throttle, timeout, not found, access denied: the next target at once",
          arguments: [BedrockErrorKind.modelOverloaded, .throttledDaily, .timeout, .notFound, .accessDenied])
    func fallOverAtOnce(kind: BedrockErrorKind) {
        #expect(show(after(.failed(failure(kind)), at: first)) == "fall over to 1: failed \(kind.rawValue) x1")
        #expect(show(after(.failed(failure(kind)), at: last)) == "fail allTargetsFailed: failed \(kind.rawValue) x1")
    }

    @Test("validation, hard quota, model error, unknown: fail nonRetryable at once, even with targets left",
          arguments: [BedrockErrorKind.validation, .quotaExceeded, .modelError, .unknown])
    func nonRetryable(kind: BedrockErrorKind) {
        #expect(show(after(.failed(failure(kind)), at: first)) == "fail nonRetryable: failed \(kind.rawValue) x1")
    }

    @Test("what a failed call's reservation and the breaker are told, per kind")
    func finishing() {
        for kind in BedrockErrorKind.allCases {
            let (worstCase, breaker) = CallPathPolicy.finishing(kind, byCallerDeadline: false)
            #expect(worstCase == (kind == .timeout || kind == .modelError), "\(kind)")
            let counts: Set<BedrockErrorKind> = [.serviceUnavailable, .internalServer, .modelOverloaded, .timeout, .modelNotReady]
            #expect(breaker == (counts.contains(kind) ? .failure : .notCounted), "\(kind)")
        }
    }

    @Test("a call cut short by the caller's own deadline settles the worst case and is not a breaker failure")
    func callerDeadlineIsNotATargetFailure() {
        let (worstCase, breaker) = CallPathPolicy.finishing(.timeout, byCallerDeadline: true)
        #expect(worstCase, "Bedrock may have charged it: counting more, never less")
        #expect(breaker == .notCounted)
        #expect(CallPathPolicy.finishing(.timeout, byCallerDeadline: false).breaker == .failure, "Bedrock's own 408 still counts")
    }

    @Test("less time left than a call takes: no budget taken; the next target, or deadlineExceeded on the last")
    func minimumRemainingDeadline() {
        func admit(_ position: CallPathPolicy.Position, left: Duration, expected: Duration, maximum: Duration? = nil) -> String {
            show(policy.beforeAttempt(at: position, now: deadline - left, deadline: deadline, maximumWaitPerTarget: maximum, expectedCallTime: expected))
        }
        #expect(admit(first, left: .seconds(2), expected: .seconds(3)) == "fall over to 1: 2.0 seconds left < 3.0 seconds")
        #expect(admit(last, left: .seconds(2), expected: .seconds(2)) == "fail deadlineExceeded: 2.0 seconds left < 2.0 seconds")
        // The wait for budget leaves the expected call time: a ticket due later than that is refused at once.
        #expect(admit(last, left: .seconds(20), expected: .seconds(3)) == "admit waiting 17.0 seconds")
        #expect(admit(last, left: .seconds(20), expected: .seconds(3), maximum: .seconds(30)) == "admit waiting 17.0 seconds")
        #expect(admit(first, left: .seconds(20), expected: .seconds(3)) == "admit waiting 0.0 seconds")
        #expect(admit(last, left: .seconds(4), expected: .zero) == "admit waiting 4.0 seconds", "nothing known: the whole rest")
    }

    @Test("the expected call time: a decaying maximum of successful calls' latencies")
    func expectedCallTime() {
        #expect(CallPathPolicy.expectedCallTime(after: nil, observed: .milliseconds(300)) == .milliseconds(300))
        #expect(CallPathPolicy.expectedCallTime(after: .milliseconds(300), observed: .seconds(2)) == .seconds(2), "a slower call raises it at once")
        #expect(CallPathPolicy.expectedCallTime(after: .seconds(2), observed: .seconds(1)) == .milliseconds(1_900), "a tenth of the gap per faster call")
    }

    @Test("breaker open or a limit denies: the next target; on the last target the call fails")
    func denials() {
        let denial = Denial(budget: BudgetID(model: "m", region: "r"), reason: .tokensPerWindow, dimension: "tokens", usage: 10, limit: 10, retryAfter: .seconds(3))
        #expect(show(after(.notAdmitted(.breakerOpen(retryAfter: .seconds(5))), at: first)) == "fall over to 1: breaker open 5.0 seconds")
        #expect(show(after(.notAdmitted(.budgetExhausted(denial)), at: CallPathPolicy.Position(index: 1, count: 3, attempts: 0)))
            == "fall over to 2: budget tpm")
        #expect(show(after(.notAdmitted(.localShareExhausted), at: last)) == "fail allTargetsFailed: local share spent")
    }

    @Test("waiting for budget: none on non-last targets, the rest of the deadline on the last, or the caller's maximum")
    func admissionWaits() {
        func admit(_ position: CallPathPolicy.Position, _ maximum: Duration?, at reading: ContinuousClock.Instant) -> String {
            show(policy.beforeAttempt(at: position, now: reading, deadline: deadline, maximumWaitPerTarget: maximum))
        }
        #expect(admit(first, nil, at: now) == "admit waiting 0.0 seconds")
        #expect(admit(last, nil, at: now + .seconds(5)) == "admit waiting 15.0 seconds")
        #expect(admit(first, .seconds(2), at: now) == "admit waiting 2.0 seconds")
        #expect(admit(last, .seconds(30), at: now + .seconds(19)) == "admit waiting 1.0 seconds")
    }

    @Test("deadline edges: passed exactly at the deadline, a nanosecond before still admits")
    func deadlineEdges() {
        #expect(show(policy.beforeAttempt(at: first, now: deadline, deadline: deadline, maximumWaitPerTarget: nil)) == "deadline passed")
        #expect(show(policy.beforeAttempt(at: last, now: deadline + .seconds(1), deadline: deadline, maximumWaitPerTarget: nil)) == "deadline passed")
        #expect(show(policy.beforeAttempt(at: last, now: deadline - .nanoseconds(1), deadline: deadline, maximumWaitPerTarget: nil))
            == "admit waiting 1e-09 seconds")
    }

    @Test("a retry whose backoff would end at or after the deadline falls over instead")
    func retryPastDeadline() {
        let answer = CallPathPolicy.Outcome.fleetRetryAnswer(permitted: true, after: failure(.serviceUnavailable))
        // Attempt 2: the jitter's ceiling is 400 ms; a fraction of 0.5 waits 200 ms.
        let second = CallPathPolicy.Position(index: 0, count: 3, attempts: 2)
        #expect(show(policy.after(answer, at: second, now: deadline - .milliseconds(201), deadline: deadline, randomFraction: 0.5))
            == "retry after 0.2 seconds")
        #expect(show(policy.after(answer, at: second, now: deadline - .milliseconds(200), deadline: deadline, randomFraction: 0.5))
            == "fall over to 1: failed service-unavailable x2")
    }

    @Test("fleet retry budget exhausted: the next target, or the call fails on the last one")
    func fleetRetryBudgetExhausted() {
        let answer = CallPathPolicy.Outcome.fleetRetryAnswer(permitted: false, after: failure(.serviceUnavailable))
        #expect(show(after(answer, at: first)) == "fall over to 1: retry budget spent after service-unavailable")
        #expect(show(after(answer, at: last)) == "fail allTargetsFailed: retry budget spent after service-unavailable")
    }

    @Test("full jitter: the random fraction of min(cap, base x 2^(attempt-1)), in whole milliseconds")
    func fullJitter() {
        #expect(policy.fullJitterDelay(afterAttempt: 1, randomFraction: 1) == .milliseconds(200))
        #expect(policy.fullJitterDelay(afterAttempt: 3, randomFraction: 1) == .milliseconds(800))
        #expect(policy.fullJitterDelay(afterAttempt: 3, randomFraction: 0.25) == .milliseconds(200))
        #expect(policy.fullJitterDelay(afterAttempt: 10, randomFraction: 1) == .seconds(5))
        #expect(policy.fullJitterDelay(afterAttempt: 1_000, randomFraction: 1) == .seconds(5))
        #expect(policy.fullJitterDelay(afterAttempt: 2, randomFraction: 0) == .zero)
    }

    @Test("Redis unreachable: failClosed fails storeUnavailable; failOpen admits on the local share")
    func storeUnavailable() {
        #expect(show(after(.storeUnavailable, at: first)) == "fail storeUnavailable")
        let open = CallPathPolicy(retry: .init(), storeFailurePolicy: .failOpen(expectedInstances: 4))
        #expect(show(open.after(.storeUnavailable, at: first, now: now, deadline: deadline, randomFraction: 0)) == "local share of 4")
    }
}
