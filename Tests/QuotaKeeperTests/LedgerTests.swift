import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperTestSupport

/// Issue 3's properties, against the real redis-server at `QUOTAKEEPER_TEST_REDIS_URL`.
@Suite("Ledger", .serialized)
struct LedgerTests {
    @Test("8 processes x 32 tasks against RPM 100 admit exactly 100 in the window")
    func neverOverAdmitsRequestsAcrossProcesses() async throws {
        let configuration = testConfiguration(uniqueBudget("rpm"), rpm: 100, window: .seconds(4))
        try await withLedger(configuration) { ledger, budget in
            let results = try await runWorkers(processes: 8, budget: budget, mode: "reserve", tasks: 32, run: .milliseconds(1200))
            let admitted = results.total(\.admitted)
            #expect(admitted == 100)
            #expect(results.total(\.denied) > 0)
            let status = try await ledger.status(of: budget)
            #expect(status.window.requests == 100)
            #expect(status.window.buckets.reduce(0) { $0 + ($1.requests ?? 0) } == 100)
        }
    }

    @Test("8 processes x 32 tasks with mixed sizes never exceed TPM and leave less than the smallest size")
    func neverOverAdmitsTokensAcrossProcesses() async throws {
        let configuration = testConfiguration(uniqueBudget("tpm"), tpm: 20_000, window: .seconds(4))
        try await withLedger(configuration) { ledger, budget in
            let results = try await runWorkers(
                processes: 8, budget: budget, mode: "reserve", tasks: 32, run: .milliseconds(1200),
                tokens: [3000, 50, 1000, 200, 700])
            let tokens = results.total(\.tokens)
            #expect(tokens <= 20_000)
            #expect(tokens > 20_000 - 50)
            #expect(try await ledger.status(of: budget).window.tokens == tokens)
        }
    }

    @Test("under load across 4 processes for 3 windows, no window of whole buckets ever holds more than the limit")
    func noAlignedWindowExceedsTheLimit() async throws {
        let configuration = testConfiguration(uniqueBudget("sliding"), rpm: 40, window: .seconds(1))   // 10 x 100 ms
        try await withLedger(configuration) { _, budget in
            let results = try await runWorkers(
                processes: 4, budget: budget, mode: "reserve", tasks: 8, startDelay: .milliseconds(1200),
                run: .milliseconds(3000))
            var perBucket: [Int64: Int] = [:]
            for time in results.flatMap(\.times) { perBucket[time / 100, default: 0] += 1 }
            let first = try #require(perBucket.keys.min()), last = try #require(perBucket.keys.max())
            var busiest = 0
            for start in (first - 9)...last {
                busiest = max(busiest, (start..<start + 10).reduce(0) { $0 + perBucket[$1, default: 0] })
            }
            #expect(busiest == 40)                                      // never more, and reached
            #expect(results.total(\.admitted) >= 3 * 40 - 40)           // goodput: about one limit per window
        }
    }

    @Test("a denied caller that waits its retry-after is admitted, and retry-after is exact to the bucket")
    func deniedCallerWaitingRetryAfterIsAdmitted() async throws {
        let configuration = testConfiguration(uniqueBudget("retry"), rpm: 3, window: .seconds(2))
        try await withLedger(configuration) { ledger, budget in
            let first = try await ledger.reserve(budget, app: "app", tokens: 10)
            let firstBucket = first.bucket
            _ = consume first
            for _ in 0..<2 {
                try await Task.sleep(for: .milliseconds(250))
                _ = try await ledger.reserve(budget, app: "app", tokens: 10)
            }
            let refused = try await denial { try await ledger.reserve(budget, app: "app", tokens: 10) }
            let now = try await redisMilliseconds(ledger)
            #expect(refused.reason == .requestsPerWindow)
            #expect(refused.usage == 3 && refused.limit == 3)
            let retryAfter = try #require(refused.retryAfter)
            // The first bucket leaves the 20-bucket window at (bucket + 20) x 100 ms.
            let expected = (firstBucket + 20) * 100 - now
            #expect(abs(retryAfter.millisecondsRoundedUp - expected) <= 20)
            try await Task.sleep(for: retryAfter)
            let admitted = try await ledger.reserve(budget, app: "app", tokens: 10)
            #expect(admitted.id == 4)
        }
    }

    @Test("settle frees exactly the unused tokens with the model's burndown; release frees everything")
    func settlementAccounting() async throws {
        let budget = uniqueBudget("settle", model: "us.anthropic.claude-sonnet-4-5-20250929-v1-0")
        try await withLedger(testConfiguration(budget, rpm: 50, tpm: 10_000, window: .seconds(4))) { ledger, budget in
            #expect(ledger.burndown.rate(for: budget.model) == 5)
            let held = try await ledger.reserve(budget, app: "app", tokens: 5000)
            let settlement = try await held.settle(
                usage: TokenUsage(inputTokens: 1000, outputTokens: 200, cacheReadInputTokens: 999, cacheWriteInputTokens: 100))
            #expect(settlement.chargedTokens == 1000 + 100 + 200 * 5)
            #expect(settlement.returnedTokens == 5000 - 2100)
            var status = try await ledger.status(of: budget)
            #expect(status.window.tokens == 2100 && status.window.requests == 1)
            #expect(status.day.tokens == 2100)

            _ = try await ledger.reserve(budget, app: "app", tokens: 7900)    // exactly fills the window
            let full = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            #expect(full.reason == .tokensPerWindow && full.usage == 10_000)

            try await ledger.resetUsage(of: budget)
            let small = try await ledger.reserve(budget, app: "app", tokens: 100)
            let over = try await small.settle(usage: TokenUsage(inputTokens: 100, outputTokens: 1000))
            #expect(over.chargedTokens == 5100 && over.returnedTokens == -5000)   // the extra charge counts too
            let released = try await ledger.reserve(budget, app: "app", tokens: 3000)
            #expect(try await ledger.status(of: budget).window.tokens == 8100)
            let release = try await released.release()
            #expect(release.chargedTokens == 0 && release.returnedTokens == 3000)
            status = try await ledger.status(of: budget)
            #expect(status.window.tokens == 5100 && status.window.requests == 1)
            let minutes = try await ledger.history(of: budget, minutes: 5)
            #expect(minutes.reduce(0) { $0 + $1.tokens } == 2100 + 5100)
            #expect(minutes.reduce(0) { $0 + $1.requests } == 2)
            #expect(minutes.allSatisfy { $0.apps["app"] != nil })
        }
    }

    @Test("batch callers stop at the batch ceiling; an app cap limits one app's share")
    func batchCeilingAndAppCap() async throws {
        var configuration = testConfiguration(uniqueBudget("batch"), rpm: 10, window: .seconds(4))
        configuration.appCaps = ["capped": 0.3]
        try await withLedger(configuration) { ledger, budget in
            for _ in 0..<3 { _ = try await ledger.reserve(budget, app: "capped", tokens: 1) }
            let cap = try await denial { try await ledger.reserve(budget, app: "capped", tokens: 1) }
            #expect(cap.reason == .appCap && cap.limit == 3)
            for _ in 0..<5 { _ = try await ledger.reserve(budget, app: "bulk", priority: .batch, tokens: 1) }
            let ceiling = try await denial { try await ledger.reserve(budget, app: "bulk", priority: .batch, tokens: 1) }
            #expect(ceiling.reason == .batchCeiling && ceiling.usage == 8 && ceiling.limit == 8)
            for _ in 0..<2 { _ = try await ledger.reserve(budget, app: "user", tokens: 1) }
            let full = try await denial { try await ledger.reserve(budget, app: "user", tokens: 1) }
            #expect(full.reason == .requestsPerWindow && full.limit == 10)
            #expect(try await ledger.status(of: budget).apps["capped"]?.requests == 3)

            try await ledger.setEffectiveCeiling(0.5, of: budget)
            let lowered = try await denial { try await ledger.reserve(budget, app: "user", tokens: 1) }
            #expect(lowered.limit == 5)
        }
    }

    @Test("within one bucket and without caps (the script's everyday path) every limit admits exactly up to itself")
    func everydayPathAdmitsExactlyUpToEachLimit() async throws {
        // 60 s buckets, so the calls below share one bucket and skip the full checks until one is denied.
        func longBuckets(_ configuration: BudgetConfiguration) -> BudgetConfiguration {
            var configuration = configuration
            configuration.window = .seconds(600)
            configuration.bucketCount = 10
            configuration.dayWindow = .seconds(3600)
            configuration.dayBucketCount = 4
            return configuration
        }
        try await withLedger(longBuckets(testConfiguration(uniqueBudget("everyday"), rpm: 10, tpm: 600, tpd: 10_000))) { ledger, budget in
            for _ in 0..<8 { _ = try await ledger.reserve(budget, app: "bulk", priority: .batch, tokens: 10) }
            let ceiling = try await denial { try await ledger.reserve(budget, app: "bulk", priority: .batch, tokens: 10) }
            #expect(ceiling.reason == .batchCeiling && ceiling.usage == 8 && ceiling.limit == 8)
            _ = try await ledger.reserve(budget, app: "user", tokens: 520)     // exactly TPM 600
            let tokens = try await denial { try await ledger.reserve(budget, app: "user", tokens: 1) }
            #expect(tokens.reason == .tokensPerWindow && tokens.usage == 600 && tokens.limit == 600)
            #expect(tokens.retryAfter.map { $0 > .seconds(500) } == true)     // the tokens leave with their bucket
            _ = try await ledger.reserve(budget, app: "user", tokens: 0)       // exactly RPM 10
            let requests = try await denial { try await ledger.reserve(budget, app: "user", tokens: 0) }
            #expect(requests.reason == .requestsPerWindow && requests.usage == 10 && requests.limit == 10)
            let status = try await ledger.status(of: budget)
            #expect(status.window.requests == 10 && status.window.tokens == 600 && status.day.tokens == 600)
        }
        try await withLedger(longBuckets(testConfiguration(uniqueBudget("everyday-day"), tpm: 10_000, tpd: 700))) { ledger, budget in
            _ = try await ledger.reserve(budget, app: "user", tokens: 300)
            _ = try await ledger.reserve(budget, app: "user", tokens: 400)     // exactly 700 tokens per day
            let day = try await denial { try await ledger.reserve(budget, app: "user", tokens: 1) }
            #expect(day.reason == .tokensPerDay && day.usage == 700 && day.limit == 700)
            try await ledger.setEffectiveCeiling(0.5, of: budget)
            let lowered = try await denial { try await ledger.reserve(budget, app: "user", tokens: 0) }
            #expect(lowered.reason == .tokensPerDay && lowered.limit == 350)
        }
    }

    @Test("the in-flight limit counts leases; a dead holder's lease expires")
    func inFlightLeases() async throws {
        var configuration = testConfiguration(uniqueBudget("inflight"), rpm: 100, window: .seconds(4))
        configuration.inFlight = .init(limit: 2, lease: .milliseconds(400))
        try await withLedger(configuration) { ledger, budget in
            let first = try await ledger.reserve(budget, app: "app", tokens: 1)
            let crashed = try await ledger.reserve(budget, app: "app", tokens: 1)
            _ = consume crashed     // its holder never settles
            let refused = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            #expect(refused.reason == .inFlight && refused.usage == 2)
            try await first.settle(usage: TokenUsage(inputTokens: 1, outputTokens: 0))
            let third = try await ledger.reserve(budget, app: "app", tokens: 1)
            _ = try await denial { try await ledger.reserve(budget, app: "app", tokens: 1) }
            try await Task.sleep(for: .milliseconds(450))     // the crashed lease (and the third's) expired
            let fourth = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(try await ledger.status(of: budget).inFlight == 1)
            try await third.release()
            try await fourth.release()
        }
    }

    @Test("bad input is refused by the Swift API and by the scripts themselves")
    func invalidInputIsRefused() async throws {
        try await withLedger(testConfiguration(uniqueBudget("invalid"), rpm: 10)) { ledger, budget in
            for attempt in [
                { try await ledger.reserve(budget, app: "app", tokens: -5) },
                { try await ledger.reserve(budget, app: "bad app!", tokens: 1) },
                { try await ledger.reserve(budget, app: "app", tokens: 1, requests: 0) },
                { try await ledger.reserve(budget, app: "app", tokens: 1_000_000_000) },
            ] as [() async throws -> Reservation] {
                await #expect(throws: LedgerError.self) { _ = try await attempt() }
            }
            for arguments in [
                ["app", "interactive", "1", "-5", "0"], ["app", "urgent", "1", "5", "0"], ["a b", "batch", "1", "5", "0"],
                ["app", "batch", "1", "1e12", "0"], ["app", "batch", "1.5", "5", "0"], ["app", "batch", "1", "5", "-1"],
                ["app", "batch", "1", "5", "soon"], ["app", "interactive", "1"],
            ] {
                let reply = try await ledger.evaluate(LedgerScripts.reserve, budget, arguments)
                #expect(reply.tag == "invalid", "\(arguments) -> \(reply)")
            }
            let settle = try await ledger.evaluate(
                LedgerScripts.settle, budget,
                ["settle", "1", "1", "app", "1", "1", "1", "10", "-1", "0", "0", "1", "success", "0", "i", "0"])
            #expect(settle.tag == "invalid")
            let zero = try await ledger.evaluate(LedgerScripts.configure, budget, ["set", "rpm", "0"])
            #expect(zero.tag == "invalid")
            let geometry = try await ledger.evaluate(LedgerScripts.configure, budget, ["set", "win", "1999"])
            #expect(geometry.tag == "invalid")
        }
        var zeroLimit = testConfiguration(uniqueBudget("invalid"), rpm: 0)
        #expect(throws: LedgerError.self) { try zeroLimit.validate() }
        zeroLimit = testConfiguration(uniqueBudget("invalid"), rpm: 5, window: .milliseconds(30))
        #expect(throws: LedgerError.self) { try zeroLimit.validate() }
        let redis = RedisClient(configuration: try TestRedis.configuration())
        #expect(throws: LedgerError.self) { try QuotaLedger(redis: redis, budgets: [zeroLimit]) }
        await redis.shutdown()
    }

    @Test("limits lost by Redis are re-seeded from configuration; an unknown budget is a typed error")
    func reseedsAfterRedisLosesTheBudget() async throws {
        try await withLedger(testConfiguration(uniqueBudget("reseed"), rpm: 7, tpm: 700)) { ledger, budget in
            _ = try await ledger.reserve(budget, app: "app", tokens: 1)
            _ = try await ledger.redis.send(["DEL", ledger.ledgerKey(budget)])      // as after a restart
            let reservation = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(reservation.id == 1)
            let status = try await ledger.status(of: budget)
            #expect(status.settings["rpm"] == 7 && status.settings["tpm"] == 700)
            let stranger = uniqueBudget("unknown")
            await #expect {
                _ = try await ledger.reserve(stranger, app: "app", tokens: 1)
            } throws: { ($0 as? LedgerError)?.code == .unknownBudget }
            try await reservation.release()
        }
    }

    @Test("after a real Redis restart (state and scripts lost) the ledger re-seeds and keeps admitting")
    func survivesRedisRestart() async throws {
        let server = try await RedisServerProcess()
        var redisConfiguration = try RedisConfiguration(url: server.url())
        redisConfiguration.timeouts.command = .seconds(2)
        let redis = RedisClient(configuration: redisConfiguration)
        let configuration = testConfiguration(uniqueBudget("restart"), rpm: 5, window: .seconds(4))
        let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
        let budget = configuration.id
        let before = try await ledger.reserve(budget, app: "app", tokens: 10)
        await server.stop()
        try await server.start()
        func reserveOnceReconnected() async throws -> Reservation {
            for _ in 0..<50 {
                do {
                    return try await ledger.reserve(budget, app: "app", tokens: 10)
                } catch let error as LedgerError where error.code == .storeUnavailable {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            return try await ledger.reserve(budget, app: "app", tokens: 10)
        }
        let after = try await reserveOnceReconnected()
        let (afterID, afterEpoch, beforeEpoch) = (after.id, after.epoch, before.epoch)
        #expect(afterID == 1 && afterEpoch != beforeEpoch)      // re-seeded: a new ledger
        let settled = try await before.settle(usage: TokenUsage(inputTokens: 1, outputTokens: 1))
        #expect(settled.chargedTokens == 2)
        // Its hold was lost with the restart; an old-epoch settlement gives nothing back (only a charge above
        // the hold would be added).
        #expect(try await ledger.status(of: budget).window.tokens == 10)
        _ = try await after.release()
        await redis.shutdown()
        await server.stop()
    }

    @Test("acquire waits for the retry-after, gives up at maxWait and honours cancellation")
    func acquireWaitsWithinItsDeadline() async throws {
        try await withLedger(testConfiguration(uniqueBudget("acquire"), rpm: 2, window: .seconds(1))) { ledger, budget in
            for _ in 0..<2 { _ = try await ledger.reserve(budget, app: "app", tokens: 1) }
            let clock = ContinuousClock()
            let start = clock.now
            await #expect {
                _ = try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .milliseconds(100))
            } throws: { ($0 as? LedgerError)?.code == .budgetExhausted && ($0 as? LedgerError)?.denial != nil }
            #expect(clock.now - start < .milliseconds(100))   // gave up at once: the wait exceeds maxWait
            let waiter = Task { try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .seconds(10)).id }
            waiter.cancel()
            await #expect(throws: CancellationError.self) { _ = try await waiter.value }
            let admitted = try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .seconds(3))
            #expect(clock.now - start > .milliseconds(500) && admitted.id == 3)
            await #expect {
                _ = try await ledger.acquire(budget, app: "app", tokens: 1, requests: 3, maxWait: .seconds(3))
            } throws: { ($0 as? LedgerError)?.denial?.retryAfter == nil }   // can never fit
        }
    }

    @Test("a budget's ledger takes the same memory after 10^3 and 10^6 reservations")
    func boundedMemory() async throws {
        var configuration = testConfiguration(uniqueBudget("memory"), rpm: 1_000_000_000, tpm: 1_000_000_000_000, window: .seconds(2))
        configuration.appCaps = ["capped": 1]
        configuration.dayWindow = .seconds(2)      // so that both phases fill every ring
        configuration.dayBucketCount = 20
        try await withLedger(configuration) { ledger, budget in
            let key = ledger.ledgerKey(budget)
            let loop = RedisScript(name: "reserve_loop", source: Self.reserveLoop)
            func reserve(_ count: Int) async throws {
                let reply = try await ledger.redis.evalScript(
                    loop, keys: [key], arguments: ["capped", "interactive", "1", "100", "0", String(count)])
                #expect(reply.integer == Int64(count))
            }
            // 10^3 spread over more than one window, so every bucket of the ring has been written.
            for _ in 0..<25 {
                try await reserve(40)
                try await Task.sleep(for: .milliseconds(100))
            }
            let small = try #require(try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer)
            for _ in 0..<50 { try await reserve(20_000) }     // 10^6, in slices that keep Redis responsive
            let large = try #require(try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer)
            #expect(try await ledger.status(of: budget).reservations == 1_001_000)
            #expect(Double(large) <= Double(small) * 1.1 && Double(large) >= Double(small) * 0.9, "\(small) -> \(large) bytes")
            #expect(large <= 16 * 1024)
            print("ledger memory: \(small) bytes after 10^3, \(large) bytes after 10^6 reservations")
        }
    }

    /// `ledger_reserve`'s body run `ARGV[6]` times in one script: the bounded-memory test's server-side loop.
    static let reserveLoop = EmbeddedLuaScripts.ledgerLib + """

        local function reserve()
        \(EmbeddedLuaScripts.ledgerReserve)
        end
        local admitted = 0
        for _ = 1, tonumber(ARGV[6]) do
          if reserve()[1] == 'ok' then admitted = admitted + 1 end
        end
        return admitted
        """
}
