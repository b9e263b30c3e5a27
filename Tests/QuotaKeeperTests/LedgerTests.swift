import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis
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

    @Test(
        "under load from 4 processes, no continuous window of the budget's length holds more than the limit",
        arguments: [1, 2, 60])
    func noSlidingWindowExceedsTheLimit(buckets: Int) async throws {
        var configuration = testConfiguration(uniqueBudget("sliding\(buckets)"), rpm: 40, tpm: 4000, window: .milliseconds(1200))
        configuration.bucketCount = buckets
        try await withLedger(configuration) { _, budget in
            let results = try await runWorkers(
                processes: 4, budget: budget, mode: "reserve", tasks: 8, startDelay: .milliseconds(1200),
                run: .milliseconds(3000), tokens: [30, 170, 90, 10, 200])
            let times = results.flatMap(\.times), held = results.flatMap { $0.held ?? [] }
            #expect(times.count == held.count && times.count == results.total(\.admitted))
            let busiest = busiestWindow(times: times, held: held, windowMilliseconds: 1200)
            #expect(busiest.requests <= 40)                                  // never more
            #expect(busiest.tokens <= 4000)
            #expect(busiest.requests >= 20 || busiest.tokens >= 2000)          // and the limits are used
        }
    }

    @Test("a reserve retried with the same id returns the first admission and holds nothing more")
    func reserveIsIdempotentByID() async throws {
        try await withLedger(testConfiguration(uniqueBudget("idempotent"), rpm: 3, tpm: 1000)) { ledger, budget in
            let first = try await ledger.reserve(budget, app: "app", tokens: 100, id: "call-1")
            let again = try await ledger.reserve(budget, app: "app", tokens: 100, id: "call-1")
            #expect(first.sequence == again.sequence && first.admittedAtMilliseconds == again.admittedAtMilliseconds)
            var status = try await ledger.status(of: budget)
            #expect(status.window.requests == 1 && status.window.tokens == 100)
            try await first.settle(usage: TokenUsage(inputTokens: 20, outputTokens: 10))
            // The retry's handle names the same reservation: it is settled now.
            do {
                try await again.release()
                Issue.record("a release after settle was accepted")
            } catch let error as LedgerError {
                #expect(error.code == .alreadySettled)
            }
            status = try await ledger.status(of: budget)
            #expect(status.window.requests == 1 && status.window.tokens == 30)
            await #expect {
                _ = try await ledger.reserve(budget, app: "app", tokens: 1, id: "bad id")
            } throws: { ($0 as? LedgerError)?.code == .invalidArgument }
        }
    }

    @Test("a repeated settle, a release after settle and a settle of an unknown id change nothing and say so")
    func settleIsIdempotentAndUnforgeable() async throws {
        try await withLedger(testConfiguration(uniqueBudget("unforgeable"), rpm: 10, tpm: 10_000)) { ledger, budget in
            let victim = try await ledger.reserve(budget, app: "victim", tokens: 1000, id: "victim")
            let other = try await ledger.reserve(budget, app: "app", tokens: 500, id: "other")
            try await other.settle(usage: TokenUsage(inputTokens: 100, outputTokens: 0))
            let before = try await ledger.status(of: budget).window
            #expect(before.requests == 2 && before.tokens == 1100)
            // Forged and repeated calls straight through the public script, as any client could send them.
            let keys = ledger.keys(budget)
            func settle(_ id: String, _ mode: String) async throws -> String? { try await settleReply(id, mode).tag }
            func settleReply(_ id: String, _ mode: String) async throws -> RedisReply {
                try await ledger.redis.evalScript(
                    LedgerScripts.settle, keys: [keys.ledger, keys.record(id), keys.inFlight, keys.probes, keys.failers],
                    arguments: [mode, "0", "0", "0", "none", "0", "forger"])
            }
            // What the first settle did, from the consumed record: charged 100 of 500 held, 400 given back.
            let repeated = try await settleReply("other", "settle")
            #expect(repeated.tag == "already_settled" && Array(repeated.integers.dropFirst(2).prefix(2)) == [100, -400], "\(repeated)")
            #expect(try await settle("other", "release") == "already_settled")
            #expect(try await settle("never-issued", "settle") == "unknown_reservation")
            #expect(try await settle("never-issued", "release") == "unknown_reservation")
            let after = try await ledger.status(of: budget).window
            #expect(after.requests == before.requests && after.tokens == before.tokens)
            // A script call with a key outside the budget where it would touch it (a failure reaches the
            // breaker's keys) is refused before anything runs.
            await #expect(throws: (any Error).self) {
                _ = try await ledger.redis.evalScript(
                    LedgerScripts.settle, keys: [keys.ledger, keys.record("victim"), keys.inFlight, keys.probes, "elsewhere"],
                    arguments: ["release", "0", "0", "0", "failure", "0", "forger"])
            }
            try await victim.release()
            #expect(try await ledger.status(of: budget).window.tokens == 100)
            // The records expire: a window's span (+ bucket + hop) or the lease, whichever is longer.
            let ttl = try #require(try await ledger.redis.send(["PTTL", keys.record("victim")]).integer)
            #expect(ttl > 0 && ttl <= 120_000)
        }
    }

    @Test("cache reads are held at admission and given back at settlement")
    func cacheReadsAreHeldThenReleased() async throws {
        let estimate = CallEstimate(inputTokens: 500, maxOutputTokens: 1000, cacheWriteTokens: 100, cacheReadTokens: 50_000)
        #expect(estimate.heldTokens == 51_600)
        try await withLedger(testConfiguration(uniqueBudget("cacheread"), tpm: 100_000)) { ledger, budget in
            let reservation = try await ledger.reserve(budget, app: "app", tokens: estimate.heldTokens)
            #expect(try await ledger.status(of: budget).window.tokens == 51_600)
            let settled = try await reservation.settle(usage: TokenUsage(
                inputTokens: 500, outputTokens: 200, cacheReadInputTokens: 50_000, cacheWriteInputTokens: 100))
            #expect(settled.chargedTokens == 800)
            #expect(try await ledger.status(of: budget).window.tokens == 800)
        }
    }

    @Test("removing the in-flight limit drops its leases; a hop margin change keeps what the window counts")
    func configurationChangesKeepTheirKeys() async throws {
        var configuration = testConfiguration(uniqueBudget("reconfigure"), rpm: 10)
        configuration.inFlight = .init(limit: 2)
        try await withLedger(configuration) { ledger, budget in
            let held = try await ledger.reserve(budget, app: "app", tokens: 1)
            #expect(try await ledger.status(of: budget).inFlight == 1)
            configuration.inFlight = nil
            try await ledger.updateBudget(configuration)
            #expect(try await ledger.status(of: budget).inFlight == 0)
            configuration.hopMargin = .seconds(1)   // 20 + 1 + 10 buckets counted now: a geometry change
            try await ledger.updateBudget(configuration)
            let status = try await ledger.status(of: budget)
            #expect(status.window.requests == 1 && status.settings["hop"] == 1000)
            // A new epoch: the old reservation's settle gives nothing back (its hold moved with the fold).
            try await held.release()
            #expect(try await ledger.status(of: budget).window.requests == 1)
        }
    }

    @Test("a reserve and a settle whose replies are lost (server paused past the timeout) are retried and count once")
    func unknownOutcomesAreRetriedOnce() async throws {
        let server = try await RedisServerProcess()
        var redisConfiguration = try RedisConfiguration(url: server.url())
        redisConfiguration.timeouts.command = .milliseconds(300)
        let redis = RedisClient(configuration: redisConfiguration)
        let configuration = testConfiguration(uniqueBudget("unknown"), rpm: 10, tpm: 10_000)
        let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
        let budget = configuration.id
        try await ledger.seedBudgets()
        try await ledger.loadScripts()
        // Paused for 450 ms: the first attempt times out at 300 ms (its command already written), the retry
        // with the same id is answered when the server resumes.
        func whilePaused<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
            server.pause()
            let task = Task { try await body() }
            try await Task.sleep(for: .milliseconds(450))
            server.resume()
            return try await task.value
        }
        let sequence = try await whilePaused {
            try await ledger.reserve(budget, app: "app", tokens: 1000, id: "lost-reply").sequence
        }
        var status = try await ledger.status(of: budget)
        #expect(status.window.requests == 1 && status.window.tokens == 1000, "held once")
        let again = try await ledger.reserve(budget, app: "app", tokens: 1000, id: "lost-reply")
        #expect(again.sequence == sequence)
        let record = ReservationRecord(again)
        _ = consume again
        let settled = try await whilePaused {
            try await ledger.finish(
                record, mode: .settle, usage: TokenUsage(inputTokens: 100, outputTokens: 100), outcome: .success,
                latency: .zero)
        }
        #expect(settled.chargedTokens == 200 && settled.returnedTokens == 800)   // the first attempt's answer
        status = try await ledger.status(of: budget)
        #expect(status.window.requests == 1 && status.window.tokens == 200, "settled once")
        await redis.shutdown()
        await server.stop()
    }

    @Test("concurrent ceiling adjustments compose atomically; the bounds hold")
    func ceilingAdjustmentsAreAtomic() async throws {
        try await withLedger(testConfiguration(uniqueBudget("ceiling"), rpm: 100)) { ledger, budget in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask { _ = try await ledger.adjustEffectiveCeiling(of: budget, .lower(factor: 0.8, floor: 0.5)) }
                }
                try await group.waitForAll()
            }
            #expect(abs((try await ledger.status(of: budget).settings["ceil"] ?? 0) - 0.64) < 1e-9)   // 1 x 0.8 x 0.8
            let floored = try await ledger.adjustEffectiveCeiling(of: budget, .lower(factor: 0.5, floor: 0.5))
            #expect(floored.current == 0.5)
            let raised = try await ledger.adjustEffectiveCeiling(of: budget, .raise(step: 0.7, ceiling: 1))
            #expect(raised.previous == 0.5 && raised.current == 1)
        }
    }

    @Test("burndown rates and the retry budget's ratio are validated before any call")
    func burndownAndRetryRatioAreValidated() async throws {
        let redis = RedisClient(configuration: try TestRedis.configuration())
        for rate in [Double.nan, .infinity, -1, 101] {
            #expect(throws: LedgerError.self) {
                try QuotaLedger(redis: redis, burndown: BurndownTable(rates: ["m": rate]))
            }
            #expect(throws: LedgerError.self) {
                try QuotaLedger(redis: redis, burndown: BurndownTable(defaultRate: rate))
            }
        }
        var configuration = CallPathConfiguration()
        configuration.retryBudget.ratio = .nan
        let coordinator = CallCoordinator(ledger: try QuotaLedger(redis: redis), configuration: configuration)
        await #expect {
            _ = try await coordinator.call(
                route: [uniqueBudget("nan")], estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1),
                options: CallOptions(app: "app")
            ) { _ in CallCompletion(value: 0, usage: TokenUsage(inputTokens: 1, outputTokens: 1)) }
        } throws: { ($0 as? CallPathError)?.code == .invalidRequest }
        await redis.shutdown()
    }

    @Test("a denied caller that waits its retry-after is admitted, and retry-after is exact to the bucket")
    func deniedCallerWaitingRetryAfterIsAdmitted() async throws {
        let configuration = testConfiguration(uniqueBudget("retry"), rpm: 3, window: .seconds(2))
        try await withLedger(configuration) { ledger, budget in
            let first = try await ledger.reserve(budget, app: "app", tokens: 10)
            let firstBucket = first.admittedAtMilliseconds / 100
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
            // The ring counts 20 + 1 + ceil(250 ms hop / 100 ms) = 24 buckets: the first bucket leaves at
            // (bucket + 24) x 100 ms.
            #expect(configuration.countedBuckets == 24)
            let expected = (firstBucket + 24) * 100 - now
            #expect(abs(retryAfter.millisecondsRoundedUp - expected) <= 20)
            try await Task.sleep(for: retryAfter)
            let admitted = try await ledger.reserve(budget, app: "app", tokens: 10)
            #expect(admitted.sequence == 4)
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

    @Test("settle's everyday path and its full path count alike: random holds settled, released or overcharged across buckets")
    func settlementPathsCountAlike() async throws {
        // Without app caps most settles take ledger_settle.lua's everyday path (held bucket = head, or an older
        // slot); with a cap on another app every settle takes ledger_settle_full.lua. The third budget takes the
        // everyday path with an in-flight limit (each settle ends a lease) and a slow-call threshold (each success's
        // latency is read). All must leave exactly the totals a plain recomputation gives, buckets that sum to
        // them, every success counted by the breaker, and answer each call with what it charged and gave back
        // (the everyday path's integer reply and the full path's array decode alike).
        for variant in ["everyday", "full", "leases"] {
            var configuration = testConfiguration(
                uniqueBudget("settle-\(variant)"), rpm: 100_000, tpm: 100_000_000, window: .seconds(3))
            configuration.bucketCount = 3   // 1 s buckets (and 1 s day buckets): settles hit the head and older buckets
            if variant == "full" { configuration.appCaps = ["someone-else": 0.5] }
            if variant == "leases" {
                configuration.inFlight = .init(limit: 1000)
                configuration.breaker.slowCallThreshold = .seconds(10)
            }
            try await withLedger(configuration) { ledger, budget in
                var open: [(record: ReservationRecord, held: Int)] = []
                var requests = 0, tokens = 0, successes = 0
                for round in 0..<3 {
                    for _ in 0..<16 {
                        let held = Int.random(in: 100...5000)
                        let reservation = try await ledger.reserve(budget, app: "app", tokens: held)
                        open.append((ReservationRecord(reservation), held))
                        requests += 1
                        tokens += held
                    }
                    open.shuffle()
                    for _ in 0..<(round == 2 ? 20 : 10) {
                        let (record, held) = open.removeLast()
                        switch Int.random(in: 0..<4) {
                        case 0:   // released: request and tokens back
                            let released = try await ledger.finish(record, mode: .release, usage: TokenUsage(inputTokens: 0, outputTokens: 0), outcome: .notCounted, latency: .zero)
                            #expect(released == Settlement(chargedTokens: 0, returnedTokens: held, breakerState: .closed), "\(variant)")
                            requests -= 1
                            tokens -= held
                        default:  // settled below, at or above what was held (burndown 1 for this model)
                            let charged = Int.random(in: 0...(2 * held))
                            let settled = try await ledger.finish(
                                record, mode: .settle, usage: TokenUsage(inputTokens: charged / 2, outputTokens: charged - charged / 2),
                                outcome: .success, latency: .milliseconds(5))
                            #expect(settled == Settlement(chargedTokens: charged, returnedTokens: held - charged, breakerState: .closed), "\(variant)")
                            tokens += charged - held
                            successes += 1
                        }
                    }
                    try await Task.sleep(for: .milliseconds(700))   // the next round lands in a later bucket
                }
                let status = try await ledger.status(of: budget)
                #expect(status.window.requests == requests && status.window.tokens == tokens, "\(variant)")
                #expect(status.day.tokens == tokens, "\(variant)")
                #expect(status.window.buckets.reduce(0) { $0 + $1.tokens } == tokens, "\(variant)")
                #expect(status.window.buckets.reduce(0) { $0 + ($1.requests ?? 0) } == requests, "\(variant)")
                #expect(status.day.buckets.reduce(0) { $0 + $1.tokens } == tokens, "\(variant)")
                #expect(status.breaker.calls == successes && status.breaker.failures == 0, "\(variant)")
                if variant == "leases" { #expect(status.inFlight == open.count, "leases of the calls still open") }
                let minutes = try await ledger.history(of: budget, minutes: 5)
                #expect(minutes.reduce(0) { $0 + $1.requests } == successes, "\(variant)")
            }
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

    @Test("settle reads latency, instance and the sibling keys only where they decide, and refuses them there before anything changes")
    func settleChecksWhereItUses() async throws {
        var configuration = testConfiguration(uniqueBudget("settle-lazy"), tpm: 100_000)
        configuration.inFlight = .init(limit: 10)                 // settle ends the lease in KEYS[3]
        configuration.breaker.slowCallThreshold = .seconds(1)    // a success's latency decides whether it failed
        try await withLedger(configuration) { ledger, budget in
            _ = try await ledger.reserve(budget, app: "app", tokens: 1000, id: "lazy")
            let keys = ledger.keys(budget)
            let history = ledger.historyKey(budget, minute: try await ledger.redisMilliseconds() / 60_000)
            let right = [keys.ledger, keys.record("lazy"), keys.inFlight, keys.probes, keys.failers, history]
            func settle(_ keys: [String], _ outcome: String, latency: String, instance: String = "i") async throws -> RedisReply {
                try await ledger.redis.evalScript(
                    LedgerScripts.settle, keys: keys, arguments: ["settle", "500", "400", "100", outcome, latency, instance])
            }
            for (latency, outcome) in [("-1", "success"), ("soon", "success"), ("1.5", "success")] {
                let reply = try await settle(right, outcome, latency: latency)
                #expect(reply.tag == "invalid" && reply.array?[1].string == "latency_ms", "\(latency) -> \(reply)")
            }
            // A slow success is a failed call: its instance is read, and must be a name.
            let slow = try await settle(right, "success", latency: "1500", instance: "bad instance")
            #expect(slow.tag == "invalid" && slow.array?[1].string == "instance", "\(slow)")
            // The in-flight key is touched (a limit is set), the breaker's keys are by a failure.
            var elsewhere = right
            elsewhere[2] = "elsewhere{\(budget)}:inflight"
            await #expect(throws: (any Error).self) { _ = try await settle(elsewhere, "none", latency: "0") }
            elsewhere = right
            elsewhere[4] = "elsewhere{\(budget)}:failers"
            await #expect(throws: (any Error).self) { _ = try await settle(elsewhere, "failure", latency: "0") }
            let status = try await ledger.status(of: budget)
            #expect(status.window.tokens == 1000 && status.inFlight == 1 && status.breaker.calls == 0, "nothing changed")
            // A reported failure failed whatever its latency: the latency is not read.
            let settled = try await settle(right, "failure", latency: "not read")
            #expect(settled.tag == "settled" && settled.integers.dropFirst().first == 500, "\(settled)")
            #expect(try await ledger.status(of: budget).inFlight == 0)
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
                let keys = LedgerWire.ReserveArguments(
                    reservationID: "r1", app: "app", priority: .batch, requests: 1, tokens: 1).keys(ledger.keys(budget))
                let reply = try await ledger.evaluate(LedgerScripts.reserve, budget, arguments, keys: keys)
                #expect(reply.tag == "invalid", "\(arguments) -> \(reply)")
            }
            let admitted = try await ledger.reserve(budget, app: "app", tokens: 10, id: "s1")
            let settleKeys = LedgerWire.SettleArguments(
                reservationID: "s1", mode: .settle, usage: TokenUsage(inputTokens: 0, outputTokens: 0), burndown: .bedrockDefaults,
                model: budget.model, outcome: .success, latency: .zero, instance: "i").keys(ledger.keys(budget))
            for (arguments, named) in [
                (["settle", "-1", "0", "0", "success", "0", "i"], "charged"), (["done", "1", "0", "0", "success", "0", "i"], "mode"),
                (["settle", "nan", "0", "0", "success", "0", "i"], "charged"), (["settle", "1e12", "0", "0", "none", "0", "i"], "charged"),
                (["settle", "1", "1.5", "0", "none", "0", "i"], "input"), (["settle", "1", "0", "1e9", "none", "0", "i"], "output"),
                (["settle", "1", "0", "0", "fine", "0", "i"], "outcome"), (["release", "0", "0", "0", "failure", "0", "bad instance"], "instance"),
            ] {
                let reply = try await ledger.evaluate(LedgerScripts.settle, budget, arguments, keys: settleKeys)
                #expect(reply.tag == "invalid" && reply.array?[1].string == named, "\(arguments) -> \(reply)")
            }
            try await admitted.release()   // none of the refused settles consumed it
            for arguments in [["set", "rpm", "0"], ["set", "win", "1999"], ["set", "hop", "-1"], ["adjust_ceiling", "lower", "2", "0.5"]] {
                let reply = try await ledger.evaluate(LedgerScripts.configure, budget, arguments, keys: ledger.keys(budget).configure)
                #expect(reply.tag == "invalid", "\(arguments) -> \(reply)")
            }
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
            #expect(reservation.sequence == 1)
            let status = try await ledger.status(of: budget)
            #expect(status.settings["rpm"] == 7 && status.settings["tpm"] == 700)
            let stranger = uniqueBudget("unknown")
            await #expect {
                _ = try await ledger.reserve(stranger, app: "app", tokens: 1)
            } throws: { ($0 as? LedgerError)?.code == .unknownBudget }
            try await reservation.release()
        }
    }

    @Test("acquire waits for the retry-after, gives up at maxWait and honours cancellation")
    func acquireWaitsWithinItsDeadline() async throws {
        try await withLedger(testConfiguration(uniqueBudget("acquire"), rpm: 2, window: .seconds(1))) { ledger, budget in
            for _ in 0..<2 { _ = try await ledger.reserve(budget, app: "app", tokens: 1) }
            let clock = ContinuousClock()
            let start = clock.now
            await #expect {
                _ = try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .milliseconds(100))
            } throws: { ($0 as? LedgerError)?.code == .waitBeyondDeadline && ($0 as? LedgerError)?.denial != nil }
            #expect(clock.now - start < .milliseconds(100))   // gave up at once: the wait exceeds maxWait
            let waiter = Task { try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .seconds(10)).id }
            waiter.cancel()
            await #expect(throws: CancellationError.self) { _ = try await waiter.value }
            let admitted = try await ledger.acquire(budget, app: "app", tokens: 1, maxWait: .seconds(3))
            // (sequence 4 when the cancelled waiter was booked before its cancellation reached it: it gave the
            // booking back, so the window then counts this one alone)
            #expect(clock.now - start > .milliseconds(500) && (admitted.sequence == 3 || admitted.sequence == 4))
            #expect(try await eventually { try await ledger.status(of: budget).window.requests == 1 })
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
                let keys = ledger.keys(budget)
                let reply = try await ledger.redis.evalScript(
                    loop, keys: [key, keys.record("loop"), keys.inFlight, keys.probes],
                    arguments: ["capped", "interactive", "1", "100", "0", String(count)])
                #expect(reply.integer == Int64(count))
            }
            // 10^3 spread over two windows (the rings count 20 + 1 + 3 buckets), so that every slot of every ring
            // has been written even when a slow host skips a bucket now and then.
            for _ in 0..<50 {
                try await reserve(20)
                try await Task.sleep(for: .milliseconds(100))
            }
            let small = try #require(try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer)
            for _ in 0..<200 { try await reserve(5_000) }     // 10^6, in slices that keep Redis responsive
            let large = try #require(try await ledger.redis.send(["MEMORY", "USAGE", key, "SAMPLES", "0"]).integer)
            #expect(try await ledger.status(of: budget).reservations == 1_001_000)
            #expect(Double(large) <= Double(small) * 1.1 && Double(large) >= Double(small) * 0.9, "\(small) -> \(large) bytes")
            #expect(large <= 16 * 1024)
            print("ledger memory: \(small) bytes after 10^3, \(large) bytes after 10^6 reservations")
        }
    }

    /// `ledger_reserve`'s body run `ARGV[6]` times in one script: the bounded-memory test's server-side loop. Each
    /// admission's record (KEYS[2]) is removed after it, so every call is a new admission; records themselves
    /// expire with their window and lease (measured apart).
    static let reserveLoop = EmbeddedLuaScripts.ledgerLib + "\n" + EmbeddedLuaScripts.ledgerLibAdmission + """

        local function reserve()
        \(EmbeddedLuaScripts.ledgerReserve)
        end
        local admitted, count = 0, tonumber(ARGV[6])
        ARGV[6] = nil   -- (a sixth argument would make the admission a caller that waits in line)
        for _ = 1, count do
          if reserve()[1] == 'ok' then admitted = admitted + 1 end
          redis.call('DEL', KEYS[2])
        end
        return admitted
        """
}
