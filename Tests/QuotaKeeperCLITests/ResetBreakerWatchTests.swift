import Foundation
import Testing

@Suite("quotakeeper reset, breaker, watch")
struct ResetBreakerWatchTests {
    @Test("reset asks on a terminal, refuses without one, and with --yes reports what it cleared")
    func reset() async throws {
        try await CLIHarness.withFreshPrefix("reset") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "100"])
            _ = try await cli.run(["budget", "set", "amazon.nova-lite-v1:0@eu-west-1", "--tpm", "1000"])
            for _ in 0..<3 { _ = try await cli.run(["reserve", sonnet, "--input-tokens", "10", "--max-output-tokens", "10"]) }

            let refused = try await cli.run(["reset", sonnet])
            #expect(refused.status == 6)
            #expect(refused.stderr.contains("stdin is not a terminal"))
            let declined = try await cli.runOnTerminal(["reset", sonnet], input: "no\n")
            #expect(declined.status == 6)
            #expect(try await usedRequests(cli) == 3)

            let confirmed = try await cli.runOnTerminal(["reset", sonnet], input: "y\n")
            #expect(confirmed.status == 0, "\(confirmed.stdout)")
            #expect(confirmed.stdout.contains("Reset the usage of budget \(sonnet) for the whole fleet? [y/N]"))
            #expect(confirmed.stdout.contains("reset \(sonnet): cleared 3 requests and 60 tokens"))
            #expect(try await usedRequests(cli) == 0)

            _ = try await cli.run(["reserve", sonnet, "--input-tokens", "10", "--max-output-tokens", "10"])
            let all = try await cli.run(["reset", "--all", "--yes", "--json"])
            #expect(all.status == 0, "\(all.stderr)")
            let cleared = try #require(try all.json["reset"] as? [[String: Any]])
            #expect(cleared.map { $0["budget"] as? String } == ["amazon.nova-lite-v1:0@eu-west-1", sonnet])
            #expect(value(cleared[1], "cleared", "requests") as? Int == 1)
            #expect(value(cleared[1], "cleared", "tokens") as? Int == 20)
            #expect(try await cli.run(["budget", "show", sonnet]).status == 0)  // configuration kept

            #expect(try await cli.run(["reset"]).isUsageError)
            #expect(try await cli.run(["reset", sonnet, "--all"]).isUsageError)
            #expect(try await cli.run(["reset", "nobody@us-east-1", "--yes"]).status == 3)
        }
    }

    private func usedRequests(_ cli: CLIHarness) async throws -> Int? {
        let status = try await cli.run(["status", sonnet, "--json"])
        return value((try status.json["budgets"] as? [[String: Any]])?.first, "usage", "rpm", "used") as? Int
    }

    @Test("breaker open/close/disable/enable/reset change the fleet's breaker; an open breaker denies reserve")
    func breaker() async throws {
        try await CLIHarness.withFreshPrefix("breaker") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "100"])
            let opened = try await cli.run(["breaker", "open", sonnet, "--for", "5m", "--json"])
            #expect(opened.status == 0, "\(opened.stderr)")
            #expect(value(try opened.json, "breaker", "state") as? String == "forced_open")
            let until = try #require(value(try opened.json, "breaker", "until_ms") as? Int)
            let now = try #require(try opened.json["now_ms"] as? Int)
            #expect((299_000...300_000).contains(until - now))

            let denied = try await cli.run(["reserve", sonnet, "--input-tokens", "1", "--max-output-tokens", "1", "--json"])
            #expect(denied.status == 2)
            #expect(try denied.json["limit"] as? String == "breaker_open")

            let status = try await cli.run(["breaker", "status", sonnet])
            // 300 s minus the time the commands took: "4m59s" or, rounded to the second, "5m".
            #expect(
                status.stdout.hasPrefix("breaker of \(sonnet): forced_open (half-open in 4m5")
                    || status.stdout.hasPrefix("breaker of \(sonnet): forced_open (half-open in 5m)"), "\(status.stdout)")
            #expect(status.stdout.contains("CALLS  FAILURES"))

            let indefinitely = try await cli.run(["breaker", "open", sonnet, "--json"])
            #expect(value(try indefinitely.json, "breaker", "until_ms") is NSNull)
            let closed = try await cli.run(["breaker", "close", sonnet])
            #expect(closed.stdout.hasPrefix("closed; breaker of \(sonnet): closed"))
            #expect(try await cli.run(["reserve", sonnet, "--input-tokens", "1", "--max-output-tokens", "1"]).status == 0)

            let disabled = try await cli.run(["breaker", "disable", sonnet, "--json"])
            #expect(value(try disabled.json, "breaker", "state") as? String == "disabled")
            let enabled = try await cli.run(["breaker", "enable", sonnet])
            #expect(enabled.stdout.hasPrefix("enabled; breaker of \(sonnet): closed"))
            let again = try await cli.run(["breaker", "enable", sonnet])
            #expect(again.stdout.hasPrefix("not disabled; left as it is"))
            let reset = try await cli.run(["breaker", "reset", sonnet, "--json"])
            #expect(value(try reset.json, "breaker", "openings") as? Int == 0)

            #expect(try await cli.run(["breaker", "open", sonnet, "--for", "5x"]).isUsageError)
            #expect(try await cli.run(["breaker", "open", sonnet, "--for", "-5m"]).isUsageError)
            #expect(try await cli.run(["breaker", "close", "nobody@us-east-1"]).status == 3)
        }
    }

    @Test("watch: frames until --iterations; JSON lines; on a terminal redraws in place and restores the cursor")
    func watch() async throws {
        try await CLIHarness.withFreshPrefix("watch") { cli in
            _ = try await cli.run(["budget", "set", sonnet, "--rpm", "100"])
            let frames = try await cli.run(["watch", "--iterations", "2", "--interval", "100ms"])
            #expect(frames.status == 0, "\(frames.stderr)")
            #expect(frames.stdout.components(separatedBy: "quotakeeper watch  prefix").count == 3)
            #expect(frames.stdout.contains("frame 2"))
            #expect(!frames.stdout.contains("\u{1B}["))

            let lines = try await cli.run(["watch", sonnet, "--json", "--iterations", "3", "--interval", "50ms"])
            let objects = lines.stdout.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(objects.map { $0["frame"] as? Int } == [1, 2, 3])
            #expect((objects.first?["budgets"] as? [[String: Any]])?.first?["budget"] as? String == sonnet)

            let terminal = try await cli.runOnTerminal(["watch", sonnet, "--iterations", "2", "--interval", "50ms"])
            #expect(terminal.status == 0)
            #expect(terminal.stdout.contains("\u{1B}[?25l"))         // cursor hidden
            #expect(terminal.stdout.contains("\u{1B}[H"))            // cursor home, no clear-screen per frame
            #expect(terminal.stdout.contains("\u{1B}[K"))
            #expect(terminal.stdout.contains("\u{1B}[J"))
            #expect(terminal.stdout.hasSuffix("\u{1B}[?25h"))        // cursor restored on exit
            #expect(terminal.stdout.contains("\u{1B}[32m"))          // colour on a terminal...
            let plain = try await cli.runOnTerminal(["watch", sonnet, "--iterations", "1"], environment: ["NO_COLOR": "1"])
            #expect(!plain.stdout.contains("\u{1B}[32m"))            // ...but not with NO_COLOR

            #expect(try await cli.run(["watch", "--iterations", "0"]).isUsageError)
        }
    }
}
