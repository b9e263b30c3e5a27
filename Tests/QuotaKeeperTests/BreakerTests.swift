import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperTestSupport

/// Issue 4's properties of the fleet-wide circuit breaker, against the real redis-server.
@Suite("Circuit breaker", .serialized)
struct BreakerTests {
    /// A budget whose breaker opens after 5 consecutive failures for `open`, probing with `probes` leases.
    func breakerConfiguration(
        _ label: String, open: Duration = .seconds(1), probes: Int = 3, lease: Duration = .seconds(5), quorum: Int = 1
    ) -> BudgetConfiguration {
        var configuration = testConfiguration(uniqueBudget(label), rpm: 100_000, window: .seconds(2))
        configuration.breaker.window = .seconds(10)
        configuration.breaker.bucketCount = 10
        configuration.breaker.consecutiveFailureThreshold = 5
        configuration.breaker.openDuration = open
        configuration.breaker.maximumOpenDuration = .seconds(30)
        configuration.breaker.halfOpenProbes = probes
        configuration.breaker.successesToClose = probes
        configuration.breaker.probeLease = lease
        configuration.breaker.quorum = quorum
        return configuration
    }

    func reportFailures(_ count: Int, _ ledger: QuotaLedger, _ budget: BudgetID) async throws {
        for _ in 0..<count {
            let reservation = try await ledger.reserve(budget, app: "app", tokens: 1)
            try await reservation.release(outcome: .failure)
        }
    }

    @Test("failures from several processes open the breaker once, and every process then sees it open")
    func failuresAcrossProcessesOpenItOnceForAll() async throws {
        try await withLedger(breakerConfiguration("fleet", open: .seconds(20))) { ledger, budget in
            let results = try await runWorkers(
                processes: 4, budget: budget, mode: "fail", tasks: 4, startDelay: .milliseconds(1200), run: .milliseconds(800))
            let reported = results.total(\.reported)
            #expect(reported >= 5)
            #expect(results.total(\.sawOpen) == 16)     // every task of every process
            let status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .open && status.openings == 1)
            let refused = try await denial { try await ledger.reserve(budget, app: "bystander", tokens: 1) }
            #expect(refused.reason == .breakerOpen && refused.retryAfter != nil)
        }
    }

    @Test("after the open duration, 50 callers across 5 processes get exactly halfOpenProbes probes")
    func halfOpenAdmitsExactlyTheProbes() async throws {
        try await withLedger(breakerConfiguration("probes", open: .milliseconds(1500), probes: 3)) { ledger, budget in
            try await reportFailures(5, ledger, budget)
            #expect(try await ledger.breakerStatus(of: budget).state == .open)
            let results = try await runWorkers(
                processes: 5, budget: budget, mode: "probe", tasks: 10, startDelay: .milliseconds(1800), run: .zero)
            #expect(results.total(\.probes) == 3)
            #expect(results.total(\.admitted) == 3)
            #expect(results.total(\.denied) == 47)
            let status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .halfOpen && status.activeProbes == 3)
        }
    }

    @Test("a prober that dies without reporting: its lease expires and another probe is allowed; successes close it")
    func deadProbersLeaseExpires() async throws {
        try await withLedger(breakerConfiguration("lease", open: .milliseconds(300), probes: 1, lease: .milliseconds(400))) { ledger, budget in
            try await reportFailures(5, ledger, budget)
            try await Task.sleep(for: .milliseconds(350))
            let lost = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(Bool(lost.isProbe))
            _ = consume lost       // the prober dies
            let waiting = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            #expect(waiting.reason == .breakerOpen)
            try await Task.sleep(for: .milliseconds(450))
            let probe = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(Bool(probe.isProbe))
            let settled = try await probe.settle(usage: TokenUsage(inputTokens: 1, outputTokens: 1))
            #expect(settled.breakerState == .closed)
            let after = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(Bool(!after.isProbe))
        }
    }

    @Test("a failed probe reopens the breaker for a longer, backed-off duration")
    func failedProbeReopensWithBackoff() async throws {
        try await withLedger(breakerConfiguration("backoff", open: .milliseconds(300), probes: 1)) { ledger, budget in
            try await reportFailures(5, ledger, budget)
            try await Task.sleep(for: .milliseconds(350))
            let probe = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(Bool(probe.isProbe))
            let result = try await probe.release(outcome: .failure)
            #expect(result.breakerState == .open)
            let status = try await ledger.breakerStatus(of: budget)
            let now = try await redisMilliseconds(ledger)
            #expect(status.openings == 2)
            #expect((550...600).contains(status.untilMilliseconds - now))     // 300 ms x 2
        }
    }

    @Test("quorum: failures from one instance alone do not open a quorum breaker")
    func quorumNeedsDistinctInstances() async throws {
        let configuration = breakerConfiguration("quorum", open: .seconds(10), quorum: 2)
        try await withLedger(configuration, instanceID: "pod-a") { ledger, budget in
            try await reportFailures(12, ledger, budget)
            var status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .closed && status.consecutiveFailures == 12 && status.failingInstances == 1)
            let other = try QuotaLedger(
                redis: ledger.redis, keyPrefix: testKeyPrefix, budgets: [configuration], instanceID: "pod-b")
            try await reportFailures(1, other, budget)
            status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .open && status.failingInstances == 2)
        }
    }

    @Test("forced open, disabled, closed and reset behave as documented")
    func operatorStates() async throws {
        try await withLedger(breakerConfiguration("operator")) { ledger, budget in
            try await ledger.forceOpenBreaker(of: budget)
            let forced = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            #expect(forced.reason == .breakerOpen && forced.retryAfter == nil)
            #expect(try await ledger.breakerStatus(of: budget).state == .forcedOpen)

            try await ledger.forceOpenBreaker(of: budget, for: .milliseconds(200))
            _ = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            try await Task.sleep(for: .milliseconds(250))
            let probe = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(Bool(probe.isProbe))       // a timed forced-open ends half-open
            try await probe.release()

            try await ledger.closeBreaker(of: budget)
            #expect(try await ledger.breakerStatus(of: budget).state == .closed)
            try await ledger.disableBreaker(of: budget)
            try await reportFailures(8, ledger, budget)
            var status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .disabled && status.failures == 8)
            try await ledger.closeBreaker(of: budget)
            try await reportFailures(5, ledger, budget)
            #expect(try await ledger.breakerStatus(of: budget).state == .open)

            try await ledger.resetBreaker(of: budget)
            status = try await ledger.breakerStatus(of: budget)
            #expect(status.state == .closed && status.openings == 0 && status.failures == 0 && status.calls == 0)
            let quota = try await ledger.reserve(budget, app: "app", tokens: 1)
            let charged = try await quota.release(outcome: .notCounted)
            #expect(charged.breakerState == .closed)
            #expect(try await ledger.breakerStatus(of: budget).calls == 0)    // not the breaker's business
        }
    }

    @Test("the breaker's state survives a reconnect (it lives in Redis, not in the process)")
    func stateSurvivesReconnect() async throws {
        let configuration = breakerConfiguration("reconnect", open: .seconds(20))
        try await withLedger(configuration) { ledger, budget in
            try await reportFailures(5, ledger, budget)
            let redis = RedisClient(configuration: try TestRedis.configuration())
            let fresh = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
            let status = try await fresh.breakerStatus(of: budget)
            let refused = try await denial { try await fresh.reserve(budget, app: "app", tokens: 1) }
            await redis.shutdown()
            #expect(status.state == .open)
            #expect(refused.reason == .breakerOpen)
        }
    }
}
