import BedrockErrors
import Foundation
import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Synchronization
import Testing

@Suite("Resilient call path against the real redis-server")
struct CallPathTests {
    let prompt = "SECRET-PROMPT-4711 summarise the quarterly numbers"

    @Test("the first target serves; usage is settled with burndown")
    func happyPath() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.success(input: 100, output: 20)]])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 100, maxOutputTokens: 500), options: CallOptions(app: "checkout")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.primary)
        #expect(!result.isFallback)
        #expect(result.attempts == 1)
        #expect(result.chargedTokens == 100 + 20 * 5, "Sonnet 4 output burns down 5x")
        let status = try await harness.ledger.status(of: harness.primary)
        #expect(status.window.tokens == 200)
        #expect(status.window.requests == 1)
        try await harness.cleanUp()
    }

    @Test("503s are retried on the same target with backoff, then served")
    func retriesServiceUnavailable() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable), .failure(.internalServer), .success(input: 10, output: 1)]])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.primary)
        #expect(result.attempts == 3)
        #expect(bedrock.callCount(harness.secondary) == 0)
        let status = try await harness.ledger.status(of: harness.primary)
        #expect(status.window.requests == 1, "failed attempts are released")
        #expect(status.breaker.failures == 2, "503 and 500 count against the breaker")
        try await harness.cleanUp()
    }

    @Test("a capacity failure that persists falls over to the next target after the attempts per target")
    func fallbackAfterRetries() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable)]])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.secondary)
        #expect(result.isFallback)
        #expect(bedrock.callCount(harness.primary) == 3)
        #expect(result.skipped.count == 1)
        try await harness.cleanUp()
    }

    @Test("model overloaded falls over at once, without retrying the overloaded target")
    func overloadedFallsOver() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.failure(.modelOverloaded)]])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.secondary)
        #expect(bedrock.callLog == [harness.primary, harness.secondary])
        try await harness.cleanUp()
    }

    @Test(
        "non-retryable errors are returned at once and never retried or fallen over",
        arguments: [BedrockErrorKind.validation, .quotaExceeded, .modelError, .unknown])
    func nonRetryable(kind: BedrockErrorKind) async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.failure(kind)]])
        let error = try await #require(throws: CallPathError.self) {
            try await harness.coordinator().call(
                route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
            ) { try await bedrock.call($0, prompt: prompt) }
        }
        #expect(error.code == .nonRetryable)
        #expect(bedrock.callLog == [harness.primary])
        #expect(error.failures.count == 1)
        try await harness.cleanUp()
    }

    @Test("an open breaker skips its target at once; the failure names it")
    func breakerOpenSkips() async throws {
        let harness = try CallPathHarness()
        try await harness.ledger.forceOpenBreaker(of: harness.primary, for: .seconds(30))
        let bedrock = BedrockDouble([:])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.secondary)
        #expect(bedrock.callLog == [harness.secondary])
        guard case .breakerOpen = result.skipped.first?.reason else {
            Issue.record("expected breakerOpen, got \(result.skipped)")
            return
        }
        try await harness.cleanUp()
    }

    @Test("an exhausted budget falls over; on the last target the call waits its retry-after and is served")
    func budgetWaitAndFallback() async throws {
        let harness = try CallPathHarness(rpm: 1, window: .seconds(2))
        let bedrock = BedrockDouble([:])
        let coordinator = harness.coordinator()
        let estimate = CallEstimate(inputTokens: 10, maxOutputTokens: 10)
        // Use up both budgets' single request.
        for target in harness.route {
            _ = try await coordinator.call(route: [target], estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }
        }
        let clock = ContinuousClock()
        let started = clock.now
        let result = try await coordinator.call(route: harness.route, estimate: estimate, options: CallOptions(app: "a", deadline: .seconds(5))) {
            try await bedrock.call($0, prompt: prompt)
        }
        #expect(result.target == harness.secondary, "the last target is waited for")
        #expect(result.waited > .milliseconds(100))
        #expect(clock.now - started < .seconds(4))
        guard case .budgetExhausted(let denial) = result.skipped.first?.reason else {
            Issue.record("expected budgetExhausted, got \(result.skipped)")
            return
        }
        #expect(denial.reason == .requestsPerWindow)
        try await harness.cleanUp()
    }

    @Test("no budget within the deadline: a typed error naming every target's limit")
    func exhaustedEverywhere() async throws {
        let harness = try CallPathHarness(rpm: 1, window: .seconds(4))
        let bedrock = BedrockDouble([:])
        let coordinator = harness.coordinator()
        let estimate = CallEstimate(inputTokens: 10, maxOutputTokens: 10)
        for target in harness.route {
            _ = try await coordinator.call(route: [target], estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }
        }
        let error = try await #require(throws: CallPathError.self) {
            try await coordinator.call(route: harness.route, estimate: estimate, options: CallOptions(app: "a", deadline: .milliseconds(300))) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        #expect(error.code == .allTargetsFailed)
        #expect(error.failures.map(\.target) == harness.route)
        #expect(error.description.contains("rpm"))
        try await harness.cleanUp()
    }

    @Test("a quota throttle on an admitted call lowers the budget's effective ceiling fleet-wide")
    func throttleLowersCeiling() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.failure(.throttledTokens), .success(input: 10, output: 1)]])
        let result = try await harness.coordinator().call(
            route: harness.route, estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 100), options: CallOptions(app: "a")
        ) { try await bedrock.call($0, prompt: prompt) }
        #expect(result.target == harness.primary)
        let ceiling = try await harness.ledger.status(of: harness.primary).settings["ceil"]
        #expect(ceiling == 0.8)
        try await harness.cleanUp()
    }

    @Test("the fleet retry budget caps retries across instances sharing Redis")
    func retryBudgetCaps() async throws {
        let harness = try CallPathHarness()
        let other = try QuotaLedger(redis: harness.redis, keyPrefix: harness.prefix, budgets: [], instanceID: "other-instance")
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable)]])
        let configure: (inout CallPathConfiguration) -> Void = {
            $0.retryBudget.minimumPerWindow = 3
            $0.retryBudget.ratio = 0
            $0.retry.maximumAttemptsPerTarget = 10
        }
        let instances = [harness.coordinator(configure), CallCoordinator(ledger: other, configuration: harness.coordinator(configure).configuration)]
        for coordinator in instances {
            _ = try? await coordinator.call(route: [harness.primary], estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        // Two first attempts plus exactly 3 retries fleet-wide, however many attempts each instance allows.
        #expect(bedrock.callCount(harness.primary) == 2 + 3)
        try await harness.cleanUp()
    }

    @Test("a call cancelled in flight is settled with the worst case Bedrock could charge")
    func cancellation() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.hang]])
        let coordinator = harness.coordinator()
        let task = Task {
            try await coordinator.call(route: [harness.primary], estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 90), options: CallOptions(app: "a")) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        #expect(await eventually { bedrock.callCount(harness.primary) == 1 }, "the call is in flight")
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        let settled = try await eventually { try await harness.ledger.status(of: harness.primary).window.tokens == 10 + 90 * 5 }
        #expect(settled, "input + max output x burndown: counting more, never less")
        try await harness.cleanUp()
    }

    @Test("a call cancelled while waiting for budget holds nothing")
    func cancellationWhileWaiting() async throws {
        let harness = try CallPathHarness(rpm: 1, window: .seconds(4))
        let bedrock = BedrockDouble([:])
        let coordinator = harness.coordinator()
        let estimate = CallEstimate(inputTokens: 10, maxOutputTokens: 10)
        _ = try await coordinator.call(route: [harness.primary], estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }
        let task = Task {
            try await coordinator.call(route: [harness.primary], estimate: estimate, options: CallOptions(app: "a", deadline: .seconds(10))) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(bedrock.callCount(harness.primary) == 1, "the waiting call never reached Bedrock")
        // The waiting call was booked for when the first leaves the window (the window ring's head moved there,
        // past the first call); cancelled, it gave the booking back and left the line.
        #expect(try await eventually { try await harness.ledger.status(of: harness.primary).window.requests == 0 })
        let now = try await harness.ledger.status(of: harness.primary).nowMilliseconds
        #expect(try await harness.ledger.waitingLine(of: harness.primary, now: now).interactive.waiters == 0)
        try await harness.cleanUp()
    }

    @Test("the deadline bounds a hanging Bedrock call")
    func deadline() async throws {
        let harness = try CallPathHarness()
        let bedrock = BedrockDouble([harness.primary: [.hang], harness.secondary: [.hang]])
        let clock = ContinuousClock()
        let started = clock.now
        let error = try await #require(throws: CallPathError.self) {
            try await harness.coordinator().call(route: harness.route, estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a", deadline: .milliseconds(300))) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        #expect(clock.now - started < .seconds(2))
        #expect([.deadlineExceeded, .allTargetsFailed].contains(error.code))
        try await harness.cleanUp()
    }

    @Test("a call cut short by its own deadline settles the worst case and is not a breaker failure")
    func callerDeadlineIsNotABreakerFailure() async throws {
        var breaker = BreakerConfiguration()
        breaker.consecutiveFailureThreshold = 1   // one failure would open it
        let harness = try CallPathHarness(breaker: breaker)
        let bedrock = BedrockDouble([harness.primary: [.hang]])
        let error = try await #require(throws: CallPathError.self) {
            try await harness.coordinator().call(
                route: [harness.primary], estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 90),
                options: CallOptions(app: "a", deadline: .milliseconds(300))) { try await bedrock.call($0, prompt: prompt) }
        }
        #expect(error.code == .allTargetsFailed || error.code == .deadlineExceeded)
        let status = try await harness.ledger.status(of: harness.primary)
        #expect(status.breaker.state == .closed)
        #expect(status.breaker.failures == 0 && status.breaker.consecutiveFailures == 0, "the caller's deadline is not the target's fault")
        #expect(status.window.tokens == 10 + 90 * 5, "Bedrock may have charged it: the worst case")
        try await harness.cleanUp()
    }

    @Test("a caller with less time left than a call takes leaves at once, without taking budget")
    func minimumRemainingDeadlineAtAdmission() async throws {
        let harness = try CallPathHarness()
        let coordinator = harness.coordinator()
        let estimate = CallEstimate(inputTokens: 10, maxOutputTokens: 10)
        let calls = Mutex(0)
        let slowCall: @Sendable (BudgetID) async throws -> CallCompletion<String> = { _ in
            calls.withLock { $0 += 1 }
            try await Task.sleep(for: .milliseconds(300))
            return CallCompletion(value: "", usage: TokenUsage(inputTokens: 10, outputTokens: 1))
        }
        // Said by the caller: a 5 s call does not fit a 4 s deadline on either target.
        let said = try await #require(throws: CallPathError.self) {
            try await coordinator.call(route: harness.route, estimate: estimate, options: CallOptions(app: "a", deadline: .seconds(4), expectedCallTime: .seconds(5)), slowCall)
        }
        #expect(said.code == .deadlineExceeded)
        #expect(said.failures.count == 2)
        #expect(calls.withLock { $0 } == 0)
        // Learned: after a 300 ms call on the primary, a 250 ms deadline cannot be met there.
        _ = try await coordinator.call(route: [harness.primary], estimate: estimate, options: CallOptions(app: "a"), slowCall)
        let clock = ContinuousClock()
        let started = clock.now
        let learned = try await #require(throws: CallPathError.self) {
            try await coordinator.call(route: [harness.primary], estimate: estimate, options: CallOptions(app: "a", deadline: .milliseconds(250)), slowCall)
        }
        #expect(clock.now - started < .milliseconds(200), "at once, not at the deadline")
        #expect(learned.code == .deadlineExceeded)
        guard case .notEnoughTimeLeft? = learned.failures.first?.reason else {
            Issue.record("expected notEnoughTimeLeft, got \(learned.failures)")
            return
        }
        #expect(calls.withLock { $0 } == 1)
        let status = try await harness.ledger.status(of: harness.primary)
        #expect(status.window.requests == 1, "only the served call holds budget")
        try await harness.cleanUp()
    }

    @Test("bad input is refused before anything is sent", arguments: [-1, 100_000_001])
    func badInput(tokens: Int) async throws {
        let harness = try CallPathHarness()
        let error = try await #require(throws: CallPathError.self) {
            try await harness.coordinator().call(route: harness.route, estimate: CallEstimate(inputTokens: tokens, maxOutputTokens: 1), options: CallOptions(app: "a")) { _ in
                CallCompletion(value: "", usage: TokenUsage(inputTokens: 0, outputTokens: 0))
            }
        }
        #expect(error.code == .invalidRequest)
        #expect(error.message.contains("inputTokens"))
        let emptyRoute = try await #require(throws: CallPathError.self) {
            try await harness.coordinator().call(route: [], estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) { _ in
                CallCompletion(value: "", usage: TokenUsage(inputTokens: 0, outputTokens: 0))
            }
        }
        #expect(emptyRoute.code == .invalidRequest)
        try await harness.cleanUp()
    }

    @Test("Redis killed mid-run with failClosed: a typed error at once")
    func redisDownFailClosed() async throws {
        let server = try await RedisServerProcess()
        let harness = try CallPathHarness(redisURL: server.url())
        let coordinator = harness.coordinator()
        let bedrock = BedrockDouble([:])
        _ = try await coordinator.call(route: harness.route, estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) {
            try await bedrock.call($0, prompt: prompt)
        }
        await server.stop()
        let clock = ContinuousClock()
        let started = clock.now
        let error = try await #require(throws: CallPathError.self) {
            try await coordinator.call(route: harness.route, estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) {
                try await bedrock.call($0, prompt: prompt)
            }
        }
        #expect(error.code == .storeUnavailable)
        #expect(error.message.contains("127.0.0.1:\(server.port)"))
        #expect(clock.now - started < .seconds(2))
        #expect(bedrock.callLog.count == 1, "nothing reached Bedrock without the ledger")
        await harness.redis.shutdown()
    }

    @Test("Redis killed mid-run with failOpen: calls use the local share, the usage is replayed once Redis is back")
    func redisDownFailOpen() async throws {
        let server = try await RedisServerProcess()
        let harness = try CallPathHarness(rpm: 10, tpm: 100_000, window: .seconds(30), redisURL: server.url())
        let coordinator = harness.coordinator { $0.storeFailurePolicy = .failOpen(expectedInstances: 2) }
        let bedrock = BedrockDouble([harness.primary: [.success(input: 100, output: 10)]])
        let estimate = CallEstimate(inputTokens: 100, maxOutputTokens: 100)
        let route = [harness.primary]
        _ = try await coordinator.call(route: route, estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }

        await server.stop()
        var served = 0
        for _ in 0..<6 {
            do {
                _ = try await coordinator.call(route: route, estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }
                served += 1
            } catch let error as CallPathError {
                guard case .localShareExhausted = error.failures.first?.reason else {
                    Issue.record("expected the local share to be spent, got \(error)")
                    continue
                }
            }
        }
        #expect(served == 5, "RPM 10 shared by 2 expected instances: 5 for this one while Redis is away")
        #expect(coordinator.hasUnreplayedUsage)

        try await server.start()  // a new, empty Redis: configuration, usage and scripts are gone
        #expect(await eventually { (try? await harness.redis.send("PING")) != nil }, "the pool reconnects within its backoff")
        _ = try await coordinator.call(route: route, estimate: estimate, options: CallOptions(app: "a")) { try await bedrock.call($0, prompt: prompt) }
        let replayed = try await eventually { !coordinator.hasUnreplayedUsage }
        #expect(replayed)
        let status = try await harness.ledger.status(of: harness.primary)
        #expect(status.window.requests == 1 + 5, "the call after the restart plus the 5 replayed")
        #expect(status.window.tokens == 6 * (100 + 10 * 5))

        // A replay whose reply was lost is sent again with the same id: charged once.
        let again = UsageReplay(id: "retry-check", budget: harness.primary, app: "a", requests: 1, tokens: 7)
        #expect(try await harness.ledger.replay(again))
        #expect(try await harness.ledger.replay(again) == false)
        #expect(try await harness.ledger.status(of: harness.primary).window.tokens == 6 * 150 + 7)
        await harness.redis.shutdown()
    }

    @Test("no prompt text appears in any log line at any level, on any path")
    func noPromptInLogs() async throws {
        let log = RecordedLog()
        let harness = try CallPathHarness(logger: log.logger())
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable), .failure(.modelOverloaded)], harness.secondary: [.failure(.throttledTokens), .failure(.validation)]])
        let coordinator = harness.coordinator(logger: log.logger())
        _ = try? await coordinator.call(route: harness.route, estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) {
            try await bedrock.call($0, prompt: prompt)
        }
        _ = try? await coordinator.call(route: harness.route, estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1), options: CallOptions(app: "a")) {
            try await bedrock.call($0, prompt: prompt)
        }
        #expect(!log.all.isEmpty, "the paths above do log")
        #expect(log.all.allSatisfy { !$0.contains("SECRET-PROMPT-4711") })
        try await harness.cleanUp()
    }
}
