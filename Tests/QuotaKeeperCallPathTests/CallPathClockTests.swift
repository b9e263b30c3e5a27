import BedrockErrors
import Logging
@testable import QuotaKeeper
import Synchronization
import Testing

/// A clock that moves only when told to or slept on: the driver's waits become exact and take no real time.
final class ManualClock: CallPathClock {
    typealias Instant = ContinuousClock.Instant
    private let current = Mutex(ContinuousClock.now)
    private let sleeps = Mutex<[Duration]>([])

    var now: Instant { current.withLock { $0 } }
    var minimumResolution: Duration { .nanoseconds(1) }
    /// Every sleep asked of the clock, in order.
    var slept: [Duration] { sleeps.withLock { $0 } }

    func advance(by duration: Duration) { current.withLock { $0 += duration } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        let duration = current.withLock { now in
            defer { now = max(now, deadline) }
            return max(deadline - now, .zero)
        }
        sleeps.withLock { $0.append(duration) }
    }
}

@Suite("Call path driver on an injected clock and random source (real redis-server)")
struct CallPathClockTests {
    let harness: CallPathHarness
    let clock = ManualClock()

    init() throws { harness = try CallPathHarness() }

    /// A coordinator on `clock` whose jitter fractions come from `fractions`, in order, and whose backoff is
    /// `baseDelay` doubling up to `maximumDelay`.
    func coordinator(
        fractions: [Double] = [], baseDelay: Duration = .milliseconds(200), maximumDelay: Duration = .seconds(5)
    ) -> CallCoordinator {
        var configuration = CallPathConfiguration()
        configuration.retry.baseDelay = baseDelay
        configuration.retry.maximumDelay = maximumDelay
        let remaining = Mutex(fractions)
        return CallCoordinator(
            ledger: harness.ledger, configuration: configuration, logger: Logger(label: "test"), clock: clock,
            randomFraction: { remaining.withLock { $0.isEmpty ? 0 : $0.removeFirst() } })
    }

    /// Calls the harness's route with `deadline` through `coordinator`; `bedrock` answers each attempt after
    /// `before` ran.
    func call(
        _ coordinator: CallCoordinator, deadline: Duration, _ bedrock: BedrockDouble, before: @escaping @Sendable () -> Void = {}
    ) async throws -> CallResult<String> {
        try await coordinator.call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 10),
            options: CallOptions(app: "a", deadline: deadline)
        ) { target in
            before()
            return try await bedrock.call(target, prompt: "p")
        }
    }

    @Test("retries wait exactly the jittered backoff of each draw, on the injected clock (no real sleeping)")
    func exactBackoff() async throws {
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable), .failure(.serviceUnavailable), .success(input: 10, output: 1)]])
        let realStart = ContinuousClock.now
        let coordinator = coordinator(fractions: [0.3, 0.75], baseDelay: .seconds(10), maximumDelay: .seconds(60))
        let result = try await call(coordinator, deadline: .seconds(120), bedrock)
        #expect(result.target == harness.primary)
        #expect(result.attempts == 3)
        // One draw per failed attempt: 0.3 x 10 s after the first, 0.75 x min(60 s, 20 s) after the second.
        #expect(clock.slept == [.seconds(3), .seconds(15)])
        #expect(result.waited == .seconds(18))
        #expect(ContinuousClock.now - realStart < .seconds(10), "18 s of backoff took no real time")
        try await harness.cleanUp()
    }

    @Test("a backoff that would end at the deadline falls over at once instead")
    func backoffIntoDeadline() async throws {
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable)]])
        let coordinator = coordinator(fractions: [1], baseDelay: .seconds(10), maximumDelay: .seconds(10))
        let result = try await call(coordinator, deadline: .seconds(10), bedrock)
        #expect(result.target == harness.secondary, "now + 10 s is not before the deadline: no retry")
        #expect(bedrock.callCount(harness.primary) == 1)
        #expect(clock.slept.isEmpty)
        try await harness.cleanUp()
    }

    @Test("the deadline is read from the injected clock: a call that used all of it ends the route")
    func deadlineOnInjectedClock() async throws {
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable)]])
        let (coordinator, clock) = (coordinator(), clock)
        let error = await #expect(throws: CallPathError.self) {
            // Bedrock takes the whole deadline (on the injected clock) before it answers.
            try await call(coordinator, deadline: .seconds(20), bedrock) { clock.advance(by: .seconds(20)) }
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(error?.failures.map(\.target) == [harness.primary, harness.secondary])
        #expect(bedrock.callCount(harness.secondary) == 0)
        try await harness.cleanUp()
    }

    @Test("a lowered effective ceiling rises one step after a quiet recovery interval on the injected clock")
    func ceilingRecovery() async throws {
        let bedrock = BedrockDouble([harness.primary: [.failure(.throttledTokens), .success(input: 10, output: 1)]])
        let coordinator = coordinator()
        func ceiling() async throws -> Double { try await harness.ledger.status(of: harness.primary).settings["ceil"] ?? 0 }
        _ = try await call(coordinator, deadline: .seconds(20), bedrock)  // the throttle lowers it, the retry serves
        #expect(try await ceiling() == 0.8)
        clock.advance(by: .seconds(59))
        _ = try await call(coordinator, deadline: .seconds(20), bedrock)
        #expect(try await ceiling() == 0.8, "59 s of the 60 s interval: not yet")
        clock.advance(by: .seconds(1))
        _ = try await call(coordinator, deadline: .seconds(20), bedrock)
        #expect(abs(try await ceiling() - 0.85) < 1e-9, "one step of 0.05 after 60 quiet seconds")
        try await harness.cleanUp()
    }

    @Test("the fail-open local share's window is timed on the injected clock")
    func localShareWindow() async throws {
        let share = LocalShareLimiter(clock: clock)
        let budget = BudgetConfiguration(id: harness.primary, limits: .init(requestsPerWindow: 10))  // 60 s window
        let admitted = (1...6).map { _ in share.admit(budget, tokens: 1, expectedInstances: 2) }
        #expect(admitted.map { $0 != nil } == [true, true, true, true, true, false], "10 RPM over 2 instances: 5 each")
        clock.advance(by: .seconds(59))
        #expect(share.admit(budget, tokens: 1, expectedInstances: 2) == nil)
        clock.advance(by: .seconds(1))
        #expect(share.admit(budget, tokens: 1, expectedInstances: 2) != nil, "the window has passed")
        try await harness.cleanUp()
    }
}
