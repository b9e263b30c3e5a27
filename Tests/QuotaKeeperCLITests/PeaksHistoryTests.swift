import Foundation
import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

@Suite("quotakeeper peaks over a day of busy history")
struct PeaksHistoryTests {
    /// One seeded history row: requests, charged tokens, input, output.
    struct Row { var requests, tokens, input, output: Int }

    /// A row as the scripts store it: 4 little-endian doubles.
    static func packed(_ row: Row) -> [UInt8] {
        [row.requests, row.tokens, row.input, row.output].flatMap { value in
            withUnsafeBytes(of: Double(value).bitPattern.littleEndian, Array.init)
        }
    }

    /// Peak, nearest-rank p95 and mean rounded to 2 decimals, computed the plain way.
    static func statistics(_ values: [Int]) -> (peak: Int, p95: Int, mean: Double) {
        let sorted = values.sorted()
        let rank = Int((Double(sorted.count) * 0.95).rounded(.up))
        return (sorted.last!, sorted[rank - 1], (Double(values.reduce(0, +)) / Double(values.count) * 100).rounded() / 100)
    }

    @Test("budget set --history-apps 2: the third app of a minute is counted in peaks' other apps, totals exact")
    func historyAppsFromTheCLI() async throws {
        try await CLIHarness.withFreshPrefix("history-apps") { cli in
            let created = try await cli.run(["budget", "set", sonnet, "--rpm", "100", "--tpm", "1000000", "--history-apps", "2"])
            #expect(created.status == 0 && created.stdout.contains("history rows         2 apps a minute + other"), "\(created.stdout)\(created.stderr)")
            let shown = try await cli.run(["budget", "show", sonnet, "--json"])
            #expect(value(try shown.json, "configuration", "history_apps_per_minute") as? Int == 2)
            let refused = try await cli.run(["budget", "set", sonnet, "--history-apps", "0"])
            #expect(refused.status != 0 && refused.stderr.contains("--history-apps"), "\(refused.stderr)")

            let redis = RedisClient(configuration: try TestRedis.configuration())
            let time = try await redis.send("TIME").array ?? []
            await redis.shutdown()
            if let seconds = time.first?.integer, seconds % 60 > 45 {   // settle all three within one Redis minute
                try await Task.sleep(for: .seconds(61 - seconds % 60))
            }
            for app in ["first", "second", "third"] {
                let settled = try await cli.run(["reserve", sonnet, "--input-tokens", "1000", "--max-output-tokens", "200", "--app", app, "--settle", "--json"])
                #expect(settled.status == 0, "\(settled.stderr)")
            }
            let report = try await cli.run(["peaks", sonnet, "--since", "1h", "--json"]).json
            #expect(report["requests"] as? Int == 3 && report["tokens"] as? Int == 6000)
            #expect((report["apps"] as? [[String: Any]])?.compactMap { $0["app"] as? String }.sorted() == ["first", "second"])
            #expect(value(report, "other_apps", "requests") as? Int == 1 && value(report, "other_apps", "tokens") as? Int == 2000)
        }
    }

    @Test("peaks --since 1d reads a day of 51-row minutes in bounded commands and shows exactly the seeded numbers")
    func dayOfBusyHistory() async throws {
        // A private server: SLOWLOG logs every command over 2 ms, commandstats count this test's commands only.
        let server = try await RedisServerProcess(arguments: ["--slowlog-log-slower-than", "2000"])
        let cli = CLIHarness(prefix: "qk-cli-peaks-day:", url: server.url())
        let redis = RedisClient(configuration: try RedisConfiguration(url: server.url()))
        do {
            let created = try await cli.run(["budget", "set", sonnet, "--rpm", "1000000", "--tpm", "1000000000"])
            #expect(created.status == 0, "\(created.stderr)")
            let ledger = try QuotaLedger(redis: redis, keyPrefix: cli.prefix)
            func redisNow() async throws -> Int64 {
                let time = try await redis.send("TIME").array ?? []
                return (time.first?.integer ?? 0) * 1000 + (time.last?.integer ?? 0) / 1000
            }
            var now = try await redisNow()
            if 60_000 - now % 60_000 < 25_000 {   // seed and read within one Redis minute
                try await Task.sleep(for: .milliseconds(60_000 - now % 60_000 + 50))
                now = try await redisNow()
            }
            let current = now / 60_000
            let budget = BudgetID(model: String(sonnet.split(separator: "@")[0]), region: String(sonnet.split(separator: "@")[1]))
            let apps = (0..<50).map { String(format: "app-%02d", $0) }

            // 1440 minutes ending now; the first 7 and every 13th idle; 50 app rows + the other row each.
            var seeded: [Int64: [String: Row]] = [:]
            var commands: [RedisCommand] = []
            for minute in (current - 1439)...current {
                let offset = Int(minute - (current - 1439))
                if offset < 7 || offset % 13 == 0 { continue }
                var rows: [String: Row] = [:]
                for (index, app) in apps.enumerated() {
                    let requests = (offset * 7 + index * 13) % 40 + 1
                    rows[app] = Row(requests: requests, tokens: requests * (900 + index), input: requests * 700, output: requests * (40 + index))
                }
                rows[":other"] = Row(requests: offset % 90 + 1, tokens: (offset % 90 + 1) * 650, input: (offset % 90 + 1) * 600, output: offset % 90 + 1)
                seeded[minute] = rows
                commands.append(RedisCommand(bytes: [Array("HSET".utf8), Array(ledger.historyKey(budget, minute: minute).utf8)]
                    + rows.sorted { $0.key < $1.key }.flatMap { [Array($0.key.utf8), Self.packed($0.value)] }))
            }
            _ = try await redis.pipeline(commands)
            _ = try await redis.send("CONFIG", "RESETSTAT")
            _ = try await redis.send("SLOWLOG", "RESET")

            let peaks = try await cli.run(["peaks", sonnet, "--since", "1d", "--json"])
            #expect(peaks.status == 0, "\(peaks.stderr)")
            let report = try peaks.json

            // Bounded work per command: one HGETALL per minute (each of 51 fields), no script over the history, none slow.
            let stats = try #require(try await redis.send("INFO", "commandstats").string)
            func calls(_ command: String) -> Int {
                let lines = stats.split(whereSeparator: \.isNewline)
                guard let line = lines.first(where: { $0.hasPrefix("cmdstat_\(command):calls=") }) else { return 0 }
                let counts = line.dropFirst("cmdstat_\(command):calls=".count).prefix { $0.isNumber }
                return Int(counts) ?? 0
            }
            #expect(calls("hgetall") == 1440)
            #expect(calls("evalsha") + calls("eval") <= 2, "only ledger_read: \(stats)")
            // Only the history's commands: `ledger_read` (the budget's status) is not history and, on this 2-core
            // host under six parallel builds, took 2.3 ms once.
            let slow = try await redis.send("SLOWLOG", "GET", "128")
            let slowHistory = (slow.array ?? []).filter { entry in
                let arguments = entry.array.flatMap { $0.count > 3 ? $0[3].array : nil } ?? []
                return arguments.contains { $0.string?.contains(":hist:") == true }
            }
            #expect(slowHistory.isEmpty, "history commands over 2 ms: \(slowHistory)")

            // The same numbers as a plain computation over the seeded rows (idle minutes count as 0 from the first busy one).
            let timeline = ((current - 1439)...current).drop { seeded[$0] == nil }.map { seeded[$0] ?? [:] }
            func series(_ name: String?) -> (requests: [Int], tokens: [Int]) {
                (timeline.map { rows in name.map { rows[$0]?.requests ?? 0 } ?? rows.values.reduce(0) { $0 + $1.requests } },
                 timeline.map { rows in name.map { rows[$0]?.tokens ?? 0 } ?? rows.values.reduce(0) { $0 + $1.tokens } })
            }
            func check(_ object: Any?, _ name: String?, _ label: String) {
                let (requests, tokens) = series(name)
                let (rpm, tpm) = (Self.statistics(requests), Self.statistics(tokens))
                #expect(value(object, "requests") as? Int == requests.reduce(0, +), "\(label)")
                #expect(value(object, "tokens") as? Int == tokens.reduce(0, +), "\(label)")
                #expect(value(object, "requests_per_minute", "peak") as? Int == rpm.peak, "\(label)")
                #expect(value(object, "requests_per_minute", "p95") as? Int == rpm.p95, "\(label)")
                #expect(value(object, "requests_per_minute", "mean") as? Double == rpm.mean, "\(label)")
                #expect(value(object, "tokens_per_minute", "peak") as? Int == tpm.peak, "\(label)")
                #expect(value(object, "tokens_per_minute", "p95") as? Int == tpm.p95, "\(label)")
                #expect(value(object, "tokens_per_minute", "mean") as? Double == tpm.mean, "\(label)")
            }
            #expect(report["minutes_observed"] as? Int == 1433)
            #expect(report["active_minutes"] as? Int == seeded.count)
            check(report, nil, "all apps")
            let appReports = try #require(report["apps"] as? [[String: Any]])
            #expect(Set(appReports.compactMap { $0["app"] as? String }) == Set(apps))
            for app in appReports { check(app, app["app"] as? String, app["app"] as? String ?? "?") }
            check(report["other_apps"], ":other", "other apps")
            let sumOfPeaks = (apps + [":other"]).map { Self.statistics(series($0).tokens).peak }.reduce(0, +)
            #expect(value(report, "sum_of_app_peaks", "tokens_per_minute") as? Int == sumOfPeaks)

            let table = try await cli.run(["peaks", sonnet, "--since", "1d"])
            #expect(table.status == 0 && table.stdout.contains("(other apps)"), "\(table.stdout)")
        } catch {
            await redis.shutdown()
            await server.stop()
            throw error
        }
        await redis.shutdown()
        await server.stop()
    }
}
