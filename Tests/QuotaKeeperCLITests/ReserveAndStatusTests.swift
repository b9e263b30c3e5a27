import Foundation
import Testing

@Suite("quotakeeper reserve, status, inspect, peaks")
struct ReserveAndStatusTests {
    @Test("reserve admits (exit 0) until the limit, then denies (exit 2) naming the limit and retry-after")
    func reserveUntilDenied() async throws {
        try await CLIHarness.withFreshPrefix("reserve") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "2", "--tpm", "100000"])
            let dryRun = try await cli.run(["reserve", sonnet, "--input-tokens", "100", "--max-output-tokens", "50", "--dry-run", "--json"])
            #expect(dryRun.status == 0, "\(dryRun.stderr)")
            let dry = try dryRun.json
            #expect(dry["admitted"] as? Bool == true)
            #expect(dry["outcome"] as? String == "released")
            #expect(value(dry, "usage", "rpm", "used") as? Int == 0)

            let first = try await cli.run(["reserve", sonnet, "--input-tokens", "100", "--max-output-tokens", "50", "--app", "checkout"])
            #expect(first.status == 0)
            #expect(first.stdout.hasPrefix("admitted: reservation"))
            #expect(first.stdout.contains("holds 1 request and 150 tokens"))
            let second = try await cli.run(["reserve", sonnet, "--input-tokens", "100", "--max-output-tokens", "50", "--json"])
            #expect(try second.json["tokens"] as? Int == 150)
            #expect((try second.json["reservation_id"] as? String)?.isEmpty == false)
            #expect((try second.json["admitted_at_ms"] as? Int ?? 0) > 1_700_000_000_000)   // Redis time, ms
            #expect(value(try second.json, "usage", "rpm", "used") as? Int == 2)

            let denied = try await cli.run(["reserve", sonnet, "--input-tokens", "1", "--max-output-tokens", "1", "--json"])
            #expect(denied.status == 2)
            let decision = try denied.json
            #expect(decision["admitted"] as? Bool == false)
            #expect(decision["limit"] as? String == "rpm")
            #expect(decision["seen_usage"] as? Int == 2)
            #expect(decision["seen_limit"] as? Int == 2)
            let retry = try #require(decision["retry_after_ms"] as? Int)
            #expect(retry > 0 && retry <= 62_000)      // the ledger counts 60 + 1 + ceil(250 ms hop / 1 s) buckets
            let deniedText = try await cli.run(["reserve", sonnet, "--input-tokens", "1", "--max-output-tokens", "1"])
            #expect(deniedText.status == 2)
            #expect(deniedText.stdout.hasPrefix("denied by rpm (requests 2 of 2), retry after"))

            let batch = try await cli.run(["reserve", sonnet, "--input-tokens", "90000", "--max-output-tokens", "0", "--priority", "batch", "--json"])
            #expect(batch.status == 2)
            #expect(try batch.json["limit"] as? String != nil)
        }
    }

    @Test("reserve: the parser refuses bad usage (64), a bad app name is invalid input (1), an unknown budget 3")
    func reserveBadInput() async throws {
        try await CLIHarness.withFreshPrefix("reserve-bad") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "5"])
            for arguments in [
                ["--input-tokens=-5", "--max-output-tokens", "1"], ["--input-tokens", "x", "--max-output-tokens", "1"],
                ["--input-tokens", "1"], ["--input-tokens", "1", "--max-output-tokens", "1", "--priority", "urgent"],
                ["--input-tokens", "1", "--max-output-tokens", "1", "--dry-run", "--settle"],
            ] {
                let run = try await cli.run(["reserve", sonnet] + arguments + ["--json"])
                #expect(run.isUsageError, "\(arguments): \(run.stderr)")  // the parser's text, --json or not
            }
            let badApp = try await cli.run(["reserve", sonnet, "--input-tokens", "1", "--max-output-tokens", "1", "--app", "bad app", "--json"])
            #expect(badApp.status == 1, "\(badApp.stderr)")  // refused by the ledger while running: a JSON error
            #expect(try badApp.jsonError["code"] as? String == "invalid_input")
            #expect(try badApp.jsonError["exit_code"] as? Int == 1)
            #expect(badApp.stdout.isEmpty)
            let unknown = try await cli.run(["reserve", "nobody@us-east-1", "--input-tokens", "1", "--max-output-tokens", "1"])
            #expect(unknown.status == 3)
            #expect(unknown.stderr.contains("nobody@us-east-1"))
            #expect(unknown.stderr.contains("budget list"))
        }
    }

    @Test("status, inspect and peaks: tables with bars, JSON with usage, top apps and suggested quota")
    func readViews() async throws {
        try await CLIHarness.withFreshPrefix("status") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "10", "--tpm", "100000", "--effective-ceiling", "80%"])
            _ = try await cli.run(["budget", "set", "amazon.nova-lite-v1:0@eu-west-1", "--tokens-per-day", "1000"])
            for (app, count) in [("checkout", 3), ("search", 1)] {
                for _ in 0..<count {
                    let settled = try await cli.run(["reserve", sonnet, "--input-tokens", "1000", "--max-output-tokens", "200", "--app", app, "--settle", "--json"])
                    #expect(settled.status == 0, "\(settled.stderr)")
                    #expect(try settled.json["charged_tokens"] as? Int == 2000)  // Sonnet 4.5 burns output 5x
                }
            }

            let status = try await cli.run(["status", sonnet, "--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let budget = try #require((try status.json["budgets"] as? [[String: Any]])?.first)
            #expect(value(budget, "usage", "rpm", "used") as? Int == 4)
            #expect(value(budget, "usage", "rpm", "effective_limit") as? Int == 8)
            #expect(value(budget, "usage", "tpm", "used") as? Int == 8000)
            #expect(value(budget, "usage", "tpd", "limit") is NSNull)
            #expect(value(budget, "breaker", "state") as? String == "closed")
            let apps = try #require(budget["top_apps"] as? [[String: Any]])
            #expect(apps.map { $0["app"] as? String } == ["checkout", "search"])
            #expect(apps.first?["tokens"] as? Int == 6000)

            let all = try await cli.run(["status"])
            #expect(all.status == 0)
            #expect(all.stdout.contains("amazon.nova-lite-v1:0@eu-west-1"))
            #expect(all.stdout.contains("effective ceiling 80%"))
            #expect(all.stdout.contains("requests    ██████████"))  // 4 of 8: half the bar
            #expect(all.stdout.contains("top apps (settled, last 5m): checkout 3 req 6,000 tok, search 1 req 2,000 tok"))
            #expect(!all.stdout.contains("\u{1B}["))  // not a terminal: no colour

            let inspect = try await cli.run(["inspect", sonnet, "--json"])
            let detail = try inspect.json
            #expect(value(detail, "window", "requests") as? Int == 4)
            #expect(!((value(detail, "window", "buckets") as? [Any]) ?? []).isEmpty)
            #expect(value(detail, "priorities", "batch", "rpm", "limit") as? Int == 6)
            #expect(value(detail, "priorities", "interactive", "rpm", "available") as? Int == 4)
            #expect((detail["history"] as? [Any])?.count == 15)
            let inspectTable = try await cli.run(["inspect", sonnet])
            #expect(inspectTable.stdout.contains("headroom by priority:"))
            #expect(inspectTable.stdout.contains("batch        2 of 6 free"))
            #expect(inspectTable.stdout.contains("last 15 minutes"))

            let peaks = try await cli.run(["peaks", sonnet, "--since", "1h", "--json"])
            let report = try peaks.json
            #expect(report["requests"] as? Int == 4)
            #expect(report["tokens"] as? Int == 8000)
            #expect(report["mean_tokens_per_request"] as? Int == 2000)
            #expect(report["mean_input_tokens_per_request"] as? Int == 1000, "input as Bedrock reported it")
            #expect(report["mean_output_tokens_per_request"] as? Int == 200, "output before burndown")
            #expect((report["apps"] as? [[String: Any]])?.first?["app"] as? String == "checkout")
            let peakRPM = try #require(value(report, "requests_per_minute", "peak") as? Int)
            let sumOfPeaks = try #require(value(report, "sum_of_app_peaks", "requests_per_minute") as? Int)
            #expect(value(report, "suggested", "requests_per_minute") as? Int == Int((Double(max(peakRPM, sumOfPeaks)) * 1.15).rounded(.up)))
            if report["active_minutes"] as? Int == 1 {  // all four calls settled within one minute
                #expect(peakRPM == 4 && sumOfPeaks == 4)
                #expect(value(report, "suggested", "requests_per_minute") as? Int == 5)     // ceil(4 x 1.15)
                #expect(value(report, "suggested", "tokens_per_minute") as? Int == 9200)    // 8000 x 1.15
                let peaksTable = try await cli.run(["peaks", sonnet, "--headroom", "25%"])
                #expect(peaksTable.stdout.contains("suggested quota (max(peak, sum of app peaks) + 25% headroom): 5 RPM, 10,000 TPM"))
                #expect(peaksTable.stdout.contains("checkout"))
            }

            let empty = try await cli.run(["peaks", "amazon.nova-lite-v1:0@eu-west-1"])
            #expect(empty.stdout.contains("no settled calls"))
            #expect(try await cli.run(["peaks", sonnet, "--since", "8d"]).isUsageError)
        }
    }
}
