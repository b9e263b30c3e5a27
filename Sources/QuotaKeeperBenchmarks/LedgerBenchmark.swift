import ArgumentParser
import Foundation
import QuotaKeeper
import QuotaKeeperRedis

/// `quotakeeper-bench ledger`: reserve+settle latency and throughput, Redis server time per admission,
/// goodput under saturation and memory per budget, beside `redis-benchmark` on the same reserve script.
struct LedgerBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Ledger admission cost and behaviour vs redis-benchmark running the same reserve script."
    )

    @OptionGroup var options: BenchmarkOptions

    @Option(help: "Saturation test: the RPM limit, window seconds and number of windows.")
    var goodputLimit: Int = 600
    @Option var goodputWindowSeconds: Int = 3
    @Option var goodputWindows: Int = 4
    @Option(help: "Rounds of the server-time measurement (each runs the reserve script and two references).")
    var serverTimeRounds: Int = 7

    func run() async throws {
        let (redis, configuration) = try options.client()
        let tool = try RedisBenchmarkTool(configuration: configuration)
        let prefix = "quotakeeper-bench-\(UUID().uuidString.prefix(6)):"
        let model = "anthropic.claude-sonnet-4-20250514-v1:0"
        let unlimited = BudgetID(model: model, region: "bench-unlimited")
        var budget = BudgetConfiguration(id: unlimited, limits: .init(requestsPerWindow: 1_000_000_000, tokensPerWindow: 1_000_000_000_000, tokensPerDay: 1_000_000_000_000_000))
        budget.bucketCount = 60
        let ledger = try QuotaLedger(redis: redis, keyPrefix: prefix, budgets: [budget], instanceID: "bench")
        try await ledger.seedBudgets()
        try await ledger.loadScripts()
        print("QuotaKeeper ledger vs redis-benchmark, Redis at \(configuration.endpoint), pool \(options.connections) connection(s)")
        print("budget: RPM + TPM + tokens/day limits, breaker closed, 60 s window in 1 s buckets\n")

        // 1. Latency of reserve + settle from one caller.
        let usage = TokenUsage(inputTokens: 1000, outputTokens: 100)
        let latency = try await measureLatency(count: options.latencySamples) {
            let reservation = try await ledger.reserve(unlimited, app: "bench", tokens: 1500)
            try await reservation.settle(usage: usage)
        }
        print("reserve+settle, single caller: p50 \(String(format: "%.1f", latency.percentile(0.5))) us, p99 \(String(format: "%.1f", latency.percentile(0.99))) us")

        // 2. Throughput vs redis-benchmark running the same reserve script with the same arguments; each call names
        // a new reservation record (redis-benchmark replaces __rand_int__ with a random number below -r; -r must
        // fit a C int: a larger one is read as 0 and every call names the same record, measuring the cheap
        // repeated-reserve answer instead of an admission), as each of the ledger's reservations does. Records
        // expire after the lease (120 s): about 150 bytes each. Pairs are set beside the server's own ceiling for
        // them: the same reserve and settle EVALSHAs (each pair a new reservation) written at once through one
        // `redis-cli --pipe`, with no client library in the way.
        let base = String(ledger.ledgerKey(unlimited).dropLast(":ledger".count))
        let random = ["-r", "1000000000"]
        let reserveArguments = ["bench", "interactive", "1", "1500"]
        func keys(_ ledgerKey: String, record: String) -> [String] {
            ["4", ledgerKey, base + ":res:" + record + "__rand_int__", base + ":inflight", base + ":probes"]
        }
        let reserveCommand = random + ["EVALSHA", QuotaLedger.reserveScript.sha1] + keys(ledger.ledgerKey(unlimited), record: "b") + reserveArguments
        let settleArguments = [   // mode, charged, input (+ cache write), output, outcome, latency ms, instance
            "settle", String(ledger.burndown.charge(usage, model: model)), String(usage.inputTokens), String(usage.outputTokens),
            "success", "0", "bench",
        ]
        func pipelinedPairs(_ round: Int) async throws -> Double {
            let time = try await redis.send(["TIME"]).array?.first?.string.flatMap { Int64($0) } ?? 0
            let history = ledger.historyKey(unlimited, minute: time / 60)
            let commands = (0..<(options.requests / 2)).flatMap { index -> [[String]] in
                let record = base + ":res:p\(round)-\(index)"
                return [
                    ["EVALSHA", QuotaLedger.reserveScript.sha1, "4", ledger.ledgerKey(unlimited), record, base + ":inflight", base + ":probes"] + reserveArguments,
                    ["EVALSHA", QuotaLedger.settleScript.sha1, "6", ledger.ledgerKey(unlimited), record, base + ":inflight", base + ":probes", base + ":failers", history]
                        + settleArguments,
                ]
            }
            return Double(commands.count / 2) / (try await tool.pipelined(commands))
        }
        // Callers that overlap share calls (group commit: `ledger_reserve_many`, `ledger_settle_many`), so their pairs
        // are also set beside the server's ceiling for batched pairs: the same batched EVALSHAs, 16 pairs a batch
        // (one reserve batch, then one settle batch of its reservations), through one `redis-cli --pipe`.
        let batch = 16
        func pipelinedBatchedPairs(_ round: Int) async throws -> Double {
            let time = try await redis.send(["TIME"]).array?.first?.string.flatMap { Int64($0) } ?? 0
            let history = ledger.historyKey(unlimited, minute: time / 60)
            let commands = (0..<(options.requests / 2 / batch)).flatMap { index -> [[String]] in
                let records = (0..<batch).map { base + ":res:q\(round)-\(index)-\($0)" }
                return [
                    ["EVALSHA", QuotaLedger.reserveManyScript.sha1, String(batch + 1), ledger.ledgerKey(unlimited)] + records
                        + records.flatMap { _ in reserveArguments + ["0"] },
                    ["EVALSHA", QuotaLedger.settleManyScript.sha1, String(batch + 2), ledger.ledgerKey(unlimited)] + records + [history]
                        + records.flatMap { _ in settleArguments.dropLast() },
                ]
            }
            return Double(commands.count / 2 * batch) / (try await tool.pipelined(commands))
        }
        print("  callers   reserve+settle pairs/s   pipelined pairs/s (server ceiling): single   ratio   batched by 16   ratio   reserve-only ops/s   redis-benchmark reserve ops/s   ratio")
        for (round, callers) in options.callerCounts.enumerated() {
            let pairs = try await measureThroughput(total: options.requests / 2, callers: callers) {
                let reservation = try await ledger.reserve(unlimited, app: "bench", tokens: 1500)
                try await reservation.settle(usage: usage)
            }
            let ceiling = try await pipelinedPairs(round)
            let batchedCeiling = try await pipelinedBatchedPairs(round)
            let reserves = try await measureThroughput(total: options.requests, callers: callers) {
                _ = try await ledger.reserve(unlimited, app: "bench", tokens: 1500)
            }
            let theirs = try await tool.run(callers: callers, requests: options.requests, command: reserveCommand).requestsPerSecond
            print("  " + padded(String(callers), 7) + "   " + padded(grouped(pairs), 22) + "   " + padded(grouped(ceiling), 42) + "   " + String(format: "%5.2f", pairs / ceiling)
                + "   " + padded(grouped(batchedCeiling), 13) + "   " + String(format: "%5.2f", pairs / batchedCeiling)
                + "   " + padded(grouped(reserves), 18) + "   " + padded(grouped(theirs), 29) + "   " + String(format: "%5.2f", reserves / theirs))
        }

        // 3. Server time per admission from INFO commandstats: redis-benchmark drives the reserve script alone, in
        // rounds interleaved with two references (an empty script, and the admission's Redis work without its
        // Lua), so that a machine's noise hits all three alike. The median round is the figure to quote.
        let floorKey = ledger.ledgerKey(unlimited) + "-floor"   // a copy of the ledger hash, same hash tag
        _ = try await redis.send(["COPY", ledger.ledgerKey(unlimited), floorKey, "REPLACE"])
        let noop = RedisScript(name: "bench_noop", source: EmbeddedLuaScripts.benchNoop)
        let floor = RedisScript(name: "bench_admission_floor", source: EmbeddedLuaScripts.benchAdmissionFloor)
        for script in [noop, floor] { try await redis.loadScript(script) }
        // The references get the reserve command's key count and arguments, so all three pay alike for them.
        let probes: [(name: String, command: [String])] = [
            ("reserve (breaker + RPM + TPM + daily, one EVALSHA)", reserveCommand),
            ("Redis work alone (TIME + HMGET + GET + HSET + SET, no Lua)", random + ["EVALSHA", floor.sha1] + keys(floorKey, record: "f") + reserveArguments),
            ("empty script (return 1)", random + ["EVALSHA", noop.sha1] + keys(floorKey, record: "n") + reserveArguments),
        ]
        var serverTimes = Array(repeating: [Double](), count: probes.count)
        for _ in 0..<serverTimeRounds {
            for (index, probe) in probes.enumerated() {
                _ = try await redis.send(["CONFIG", "RESETSTAT"])
                _ = try await tool.run(callers: 16, requests: options.requests / 2, command: probe.command).requestsPerSecond
                serverTimes[index].append(try await evalshaMicrosecondsPerCall(redis))
            }
        }
        _ = try await redis.send(["DEL", floorKey])
        _ = try await redis.send(["CONFIG", "RESETSTAT"])
        // Pairs as callers send them: where they overlap, reserves and settles go in batches (fewer, longer EVALSHAs),
        // so the server time is counted per pair, in all.
        let pairCount = options.requests / 2
        _ = try await measureThroughput(total: pairCount, callers: 16) {
            let reservation = try await ledger.reserve(unlimited, app: "bench", tokens: 1500)
            try await reservation.settle(usage: usage)
        }
        let mixed = try await evalshaStatistics(redis)
        let reserveMedian = median(serverTimes[0])
        print("\nRedis server time (INFO commandstats, usec_per_call of EVALSHA; redis-benchmark -c 16, \(serverTimeRounds) interleaved rounds of \(grouped(Double(options.requests / 2))) calls):")
        print("  " + String(repeating: " ", count: 52) + "  median     min     max")
        for (index, probe) in probes.enumerated() {
            let times = serverTimes[index]
            print("  " + probe.name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "  %6.2f  %6.2f  %6.2f us", median(times), times.min() ?? .nan, times.max() ?? .nan))
        }
        print("  admission target 15 us: \(reserveMedian <= 15 ? "met" : "not met") (median)")
        print("  reserve+settle pairs of 16 callers (batched where they overlap): \(String(format: "%.2f", mixed.microseconds / Double(pairCount))) us per pair in all"
            + " (\(grouped(mixed.calls)) EVALSHAs for \(grouped(Double(pairCount))) pairs)")

        // 4. Goodput under saturation: 64 callers acquire as fast as the ledger admits. The first window is
        // warm-up; then admissions are counted (by their Redis admission time) over whole, bucket-aligned
        // windows, where the ledger guarantees at most the limit per window.
        let limited = BudgetID(model: model, region: "bench-goodput")
        var saturated = BudgetConfiguration(id: limited, limits: .init(requestsPerWindow: goodputLimit))
        saturated.window = .seconds(goodputWindowSeconds)
        saturated.bucketCount = goodputWindowSeconds * 10
        let goodputLedger = try QuotaLedger(redis: redis, keyPrefix: prefix, budgets: [saturated], instanceID: "bench")
        try await goodputLedger.seedBudgets()
        let admissions = try await saturate(goodputLedger, limited, callers: 64, duration: .seconds(goodputWindowSeconds * (goodputWindows + 1)) + .milliseconds(500))
        let windowMilliseconds = Int64(goodputWindowSeconds) * 1000
        let granularity = windowMilliseconds / Int64(saturated.bucketCount)
        let first = admissions.min() ?? 0
        let countFrom = ((first + windowMilliseconds) / granularity + 1) * granularity
        let countTo = countFrom + Int64(goodputWindows) * windowMilliseconds
        let counted = admissions.filter { $0 >= countFrom && $0 < countTo }.count
        let allowed = goodputLimit * goodputWindows
        print("\nGoodput under saturation (64 callers, RPM \(goodputLimit) per \(goodputWindowSeconds) s window in \(granularity) ms buckets):")
        print("  admitted \(counted) in \(goodputWindows) whole windows after a warm-up window, of \(allowed) allowed = \(String(format: "%.1f", 100 * Double(counted) / Double(allowed)))%")

        // 5. Memory of one budget's ledger state.
        let bytes = try await redis.send(["MEMORY", "USAGE", ledger.ledgerKey(unlimited), "SAMPLES", "0"]).integer ?? 0
        let limitedBytes = try await redis.send(["MEMORY", "USAGE", goodputLedger.ledgerKey(limited), "SAMPLES", "0"]).integer ?? 0
        print("\nMemory (MEMORY USAGE of the ledger hash): 60-bucket budget after \(grouped(Double(options.requests) * 4)) reservations: \(bytes) bytes; \(goodputWindowSeconds * 10)-bucket budget: \(limitedBytes) bytes")

        for id in [unlimited, limited] { _ = try await goodputLedger.deleteBudget(id) }
        await redis.shutdown()
    }

    private func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
    }

    private func evalshaMicrosecondsPerCall(_ redis: RedisClient) async throws -> Double {
        let statistics = try await evalshaStatistics(redis)
        return statistics.microseconds / statistics.calls
    }

    /// EVALSHA's calls and server microseconds in all since the last `CONFIG RESETSTAT` (INFO commandstats).
    private func evalshaStatistics(_ redis: RedisClient) async throws -> (calls: Double, microseconds: Double) {
        let stats = try await redis.send(["INFO", "commandstats"]).string ?? ""
        guard let line = stats.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_evalsha:") }) else {
            throw BenchmarkError("INFO commandstats has no evalsha line")
        }
        func field(_ name: String) -> Double? {
            line.split(separator: ":").last?.split(separator: ",").first(where: { $0.hasPrefix(name + "=") })
                .flatMap { Double($0.dropFirst(name.count + 1)) }
        }
        guard let calls = field("calls"), let microseconds = field("usec"), calls > 0 else {
            throw BenchmarkError("INFO commandstats: no EVALSHA counted in \(line)")
        }
        return (calls, microseconds)
    }

    /// Runs `callers` tasks that acquire (and settle at once) for `duration`; returns the Redis admission time
    /// (ms) of every admitted reservation.
    private func saturate(_ ledger: QuotaLedger, _ budget: BudgetID, callers: Int, duration: Duration) async throws -> [Int64] {
        let end = ContinuousClock.now + duration
        return try await withThrowingTaskGroup(of: [Int64].self) { group in
            for _ in 0..<callers {
                group.addTask {
                    var admitted: [Int64] = []
                    while ContinuousClock.now < end {
                        do {
                            let reservation = try await ledger.acquire(budget, app: "bench", tokens: 100, maxWait: end - ContinuousClock.now)
                            admitted.append(reservation.admittedAtMilliseconds)
                            try await reservation.settle(usage: TokenUsage(inputTokens: 50, outputTokens: 50))
                        } catch let error as LedgerError where error.code == .budgetExhausted || error.code == .waitBeyondDeadline {
                            break  // the saturation period ends before this caller's turn
                        }
                    }
                    return admitted
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }
}
