import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport

@Suite("Reading a budget stays bounded whatever its data", .serialized)
struct LedgerReadBoundTests {
    /// Fills every slot of every ring of the budget in KEYS[1] with (bucket, 1, 100), from Redis's clock.
    /// ARGV: window granularity ms and span, day granularity and span, breaker granularity and slots, then the
    /// capped apps (each gets a full ring like the window's).
    static let fillScript = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local function fill(prefix, granularity, span)
          local head = math.floor(now / granularity)
          local fields = {}
          for a = head - span + 1, head - 1 do
            fields[#fields + 1] = prefix .. (a % span)
            fields[#fields + 1] = struct.pack('<ddd', a, 1, 100)
          end
          for i = 1, #fields, 1000 do redis.call('HSET', KEYS[1], unpack(fields, i, math.min(i + 999, #fields))) end
          return struct.pack('<dddddd', head, span, span * 100, 1, 100, head - span + 1)
        end
        local w = fill('w', tonumber(ARGV[1]), tonumber(ARGV[2]))
        local d = fill('d', tonumber(ARGV[3]), tonumber(ARGV[4]))
        local b = fill('b', tonumber(ARGV[5]), tonumber(ARGV[6]))
        redis.call('HSET', KEYS[1], 'st', struct.pack('<ddd', 1, 0, 0) .. w .. d, 'bst', struct.pack('<dddd', 0, 0, 0, 0) .. b)
        for i = 7, #ARGV do
          redis.call('HSET', KEYS[1], 'a:' .. ARGV[i], fill('a:' .. ARGV[i] .. ':', tonumber(ARGV[1]), tonumber(ARGV[2])))
        end
        return redis.call('HLEN', KEYS[1])
        """

    /// Runs `body` against a private redis-server whose SLOWLOG records every command's own time; stops it after.
    func withSlowlogServer(_ body: (RedisClient) async throws -> Void) async throws {
        let server = try await RedisServerProcess(arguments: ["--slowlog-log-slower-than", "0", "--slowlog-max-len", "4096"])
        let redis = RedisClient(configuration: try RedisConfiguration(url: server.url()))
        var failure: (any Error)?
        do {
            try await body(redis)
        } catch {
            failure = error
        }
        await redis.shutdown()
        await server.stop()
        if let failure { throw failure }
    }

    @Test("status at the largest geometry (1,201-slot window, 602-slot day, 600-slot breaker, 16 capped apps, all full): no call near 2 ms")
    func readAtTheLargestGeometry() async throws {
        // ledger_read once listed every bucket as JSON from inside Redis (15 ms at this geometry); it now returns
        // totals and where the slots are, and Swift reads the slots in HMGETs of 200 fields. SLOWLOG records
        // every command's own time here; the bound checked is the median ledger_read at most 1 ms: half the
        // 2 ms rule, a margin for this 2-core host shared with parallel builds (measured in instructions it is
        // about 2.2 million, roughly 0.2 ms when the host is quiet: docs/benchmarks.md).
        try await withSlowlogServer { redis in
            let apps = (0..<BudgetConfiguration.maximumCappedApps).map { "app-\($0)" }
            var configuration = BudgetConfiguration(
                id: uniqueBudget("read-bound"),
                limits: .init(requestsPerWindow: 1_000_000, tokensPerWindow: 1_000_000_000, tokensPerDay: 1_000_000_000_000))
            configuration.window = .seconds(60)
            configuration.bucketCount = 600
            configuration.hopMargin = .seconds(60)   // the longest allowed: 600 + 1 + 600 buckets counted
            configuration.dayWindow = .seconds(86_400)
            configuration.dayBucketCount = 600
            configuration.breaker.window = .seconds(60)
            configuration.breaker.bucketCount = 600
            configuration.appCaps = Dictionary(uniqueKeysWithValues: apps.map { ($0, 0.5) })
            let budget = configuration.id
            let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
            try await ledger.seedBudgets()
            let fields = try await redis.send(
                ["EVAL", Self.fillScript, "1", ledger.ledgerKey(budget), "100", "1201", "144000", "602", "100", "600"] + apps)
            #expect((fields.integer ?? 0) > 1201 + 602 + 600 + 16 * 1201)

            _ = try await redis.send("SLOWLOG", "RESET")
            var statuses: [BudgetStatus] = []
            for _ in 0..<21 { statuses.append(try await ledger.status(of: budget)) }
            let log = try await redis.send("SLOWLOG", "GET", "4096").array ?? []
            // Entries: id, time, duration (us), arguments, ...
            func entries(_ command: String) -> [(duration: Int64, arguments: Int)] {
                log.compactMap { entry in
                    guard let fields = entry.array, fields.count > 3, let duration = fields[2].integer,
                          let arguments = fields[3].array, arguments.first?.string?.uppercased() == command
                    else { return nil }
                    return (duration, arguments.count)
                }
            }
            let reads = entries("EVALSHA").map(\.duration).sorted()
            #expect(reads.count >= 21)   // (+ one answered NOSCRIPT before the script was loaded)
            #expect(reads[reads.count / 2] <= 1000, "ledger_read durations (us): \(reads)")
            let slotReads = entries("HMGET")
            #expect(slotReads.allSatisfy { $0.arguments <= 2 + QuotaLedger.statusSlotsPerCommand }, "\(slotReads.map(\.arguments))")
            #expect((slotReads.map(\.duration).max() ?? 0) < 2000, "slot reads (us): \(slotReads.map(\.duration))")

            // What it reads: every full bucket still counted, summing to the totals; 16 capped apps with their usage.
            let status = try #require(statuses.last)
            #expect(status.window.buckets.count > 1100 && status.day.buckets.count > 550)
            #expect(status.window.buckets.reduce(0) { $0 + $1.tokens } == status.window.tokens)
            #expect(status.window.buckets.reduce(0) { $0 + ($1.requests ?? 0) } == status.window.requests)
            #expect(status.day.buckets.reduce(0) { $0 + $1.tokens } == status.day.tokens)
            #expect(status.apps.count == 16 && status.apps.values.allSatisfy { $0.requests > 0 && $0.cap == 0.5 })
            #expect(status.breaker.calls > 500)
        }
    }

    @Test("the waiting line at its largest (1,000 tickets, 3,000 app tags): a new app's ticket prunes the tags, no call near 2 ms")
    func lineAtItsLargest() async throws {
        try await withSlowlogServer { redis in
            var configuration = testConfiguration(uniqueBudget("line-bound"), rpm: 10, window: .seconds(10))
            configuration.waitingLine.capacity = 1000
            let budget = configuration.id
            let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
            try await ledger.seedBudgets()
            for _ in 0..<10 {
                let filler = try await ledger.reserve(budget, app: "filler", tokens: 1)
                _ = consume filler
            }
            let lineTickets = ledger.keys(budget).lineTickets
            var durations: [Int64] = []
            for round in 0..<5 {
                // The hash full: 1,000 tickets' members and 2,000 tags of apps the virtual time has passed.
                let filled = try await redis.send(["EVAL", """
                    redis.call('DEL', KEYS[1])
                    local fields = { '@v', '1000' }
                    for i = 1, 1000 do
                      local id = string.format('%036d', i)
                      fields[#fields + 1], fields[#fields + 2] = id, 'i|1|1|1795890000000|' .. id
                    end
                    for i = 1, 2000 do fields[#fields + 1], fields[#fields + 2] = '@i:app-' .. ARGV[1] .. '-' .. i, '1' end
                    -- (the newcomer's app far ahead of its booking lead: it takes a ticket)
                    fields[#fields + 1], fields[#fields + 2] = '@i:newcomer-' .. ARGV[1], '1e9'
                    for i = 1, #fields, 1000 do redis.call('HSET', KEYS[1], unpack(fields, i, math.min(i + 999, #fields))) end
                    return redis.call('HLEN', KEYS[1])
                    """, "1", lineTickets, String(round)])
                #expect((filled.integer ?? 0) >= 3000)
                _ = try await redis.send("SLOWLOG", "RESET")
                let request = QuotaLedger.ReserveRequest(
                    app: "newcomer-\(round)", priority: .interactive, tokens: 1, requests: 1, lease: nil, id: "newcomer-\(round)")
                switch try await ledger.attempt(budget, request, waiting: .init(maxWait: .seconds(30)), mayShareACall: false) {
                case .queued: break
                case .admitted(let reservation): _ = consume reservation; Issue.record("admitted")
                case .denied(let denial): Issue.record("denied: \(denial)")
                }
                let log = try await redis.send("SLOWLOG", "GET", "16").array ?? []
                durations += log.compactMap { entry in
                    guard let fields = entry.array, fields.count > 3, let duration = fields[2].integer,
                          fields[3].array?.first?.string?.uppercased() == "EVALSHA" else { return nil }
                    return duration
                }
                // Some stale tags are gone (a random draw of 128 fields, two thirds of them stale).
                #expect((try await redis.send(["HLEN", lineTickets]).integer ?? 0) < (filled.integer ?? 0) - 20)
            }
            // The whole hash read in the script took 2.4-3.4 ms here; now a draw of 128 fields: the median well
            // under 1 ms (half the 2 ms rule, a margin for this shared 2-core host).
            durations.sort()
            #expect(durations.count == 5 && durations[2] <= 1000, "ledger_reserve durations (us): \(durations)")
        }
    }

    @Test("a budget may not count more than 2n + 1 buckets per ring, nor cap more than 16 apps")
    func geometryBounds() async throws {
        var configuration = testConfiguration(uniqueBudget("hop-bound"), rpm: 10, window: .seconds(2))
        configuration.hopMargin = .seconds(3)
        #expect(throws: LedgerError.self) { try configuration.validate() }
        configuration.hopMargin = .seconds(2)
        try configuration.validate()
        configuration.appCaps = Dictionary(uniqueKeysWithValues: (0...BudgetConfiguration.maximumCappedApps).map { ("app-\($0)", 0.1) })
        #expect(throws: LedgerError.self) { try configuration.validate() }

        // The script refuses the same, whoever calls it.
        let redis = RedisClient(configuration: try TestRedis.configuration())
        let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix)
        let budget = uniqueBudget("hop-bound-script")
        var valid = testConfiguration(budget, rpm: 10, window: .seconds(2))
        valid.appCaps = ["app": 0.5]
        let settings = valid.scriptSettings
        func refused(_ settings: [String]) async throws -> String? {
            let reply = try await ledger.evaluate(LedgerScripts.configure, budget, ["replace"] + settings, keys: ledger.keys(budget).configure)
            return reply.tag == "invalid" ? reply.array?[1].string : nil
        }
        var tooLongHop = settings
        if let hop = tooLongHop.firstIndex(of: "hop") { tooLongHop[hop + 1] = "2001" }
        #expect(try await refused(tooLongHop) == "hop")
        let manyCaps = settings + (0...BudgetConfiguration.maximumCappedApps).flatMap { ["cap:many-\($0)", "0.1"] }
        #expect(try await refused(manyCaps) == "cap")
        #expect(try await refused(settings) == nil)
        _ = try? await ledger.deleteBudget(budget)
        await redis.shutdown()
    }
}
