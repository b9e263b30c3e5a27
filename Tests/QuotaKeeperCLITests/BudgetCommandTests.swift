import Foundation
import Testing

@Suite("quotakeeper budget")
struct BudgetCommandTests {
    @Test("set creates and updates, show/list print tables and JSON, delete asks unless --yes")
    func lifecycle() async throws {
        try await CLIHarness.withFreshPrefix("budget") { cli in
            let created = try await cli.run(["budget", "set", sonnet, "--rpm", "100", "--tpm", "200000", "--batch-ceiling", "75%"])
            #expect(created.status == 0, "\(created.stderr)")
            #expect(created.stdout.hasPrefix("created \(sonnet)"))
            #expect(created.stdout.contains("requests per window  100"))
            #expect(created.stdout.contains("batch ceiling        75%"))

            let updated = try await cli.run(["budget", "set", sonnet, "--rpm", "none", "--tokens-per-day", "5000000", "--window-seconds", "10"])
            #expect(updated.status == 0, "\(updated.stderr)")
            #expect(updated.stdout.hasPrefix("updated \(sonnet)"))

            let show = try await cli.run(["budget", "show", sonnet, "--json"])
            #expect(show.status == 0)
            let configuration = try #require(value(try show.json, "configuration") as? [String: Any])
            #expect(configuration["requests_per_window"] is NSNull)
            #expect(configuration["tokens_per_window"] as? Int == 200_000)  // kept
            #expect(configuration["tokens_per_day"] as? Int == 5_000_000)
            #expect(configuration["window_ms"] as? Int == 10_000)
            #expect(configuration["buckets"] as? Int == 50)
            #expect(configuration["batch_ceiling"] as? Double == 0.75)
            #expect(value(configuration, "breaker", "half_open_probes") as? Int == 3)

            let capped = try await cli.run(["budget", "set", sonnet, "--app-cap", "reports=25%", "--app-cap", "search=0.5"])
            #expect(capped.stdout.contains("app cap reports      25%"))
            let uncapped = try await cli.run(["budget", "set", sonnet, "--app-cap", "search=none", "--json"])
            #expect(uncapped.isUsageError, "\(uncapped.stderr)")  // budget set has no --json
            #expect(uncapped.stderr.contains("Unknown option '--json'"))
            _ = try await cli.run(["budget", "set", sonnet, "--app-cap", "search=none"])
            let caps = value(try await cli.run(["budget", "show", sonnet, "--json"]).json, "configuration", "app_caps") as? [String: Double]
            #expect(caps == ["reports": 0.25])

            let showTable = try await cli.run(["budget", "show", sonnet])
            #expect(showTable.stdout.contains("requests per window  none"))
            #expect(showTable.stdout.contains("window               10s in 50 buckets"))

            _ = try await cli.run(["budget", "set", "amazon.nova-lite-v1:0@eu-west-1", "--rpm", "50"])
            let list = try await cli.run(["budget", "list", "--json"])
            let budgets = try #require(try list.json["budgets"] as? [[String: Any]])
            #expect(budgets.map { $0["budget"] as? String } == ["amazon.nova-lite-v1:0@eu-west-1", sonnet])
            #expect(budgets[0]["requests_per_window"] as? Int == 50)
            let listTable = try await cli.run(["budget", "list"])
            #expect(listTable.stdout.hasPrefix("BUDGET"))
            #expect(listTable.stdout.split(separator: "\n")[1].split(separator: " ").prefix(3) == ["amazon.nova-lite-v1:0@eu-west-1", "50", "-"])

            let refused = try await cli.run(["budget", "delete", sonnet])
            #expect(refused.status == 6)
            #expect(refused.stderr.contains("pass --yes"))
            #expect(try await cli.run(["budget", "show", sonnet]).status == 0)

            let declined = try await cli.runOnTerminal(["budget", "delete", sonnet], input: "n\n")
            #expect(declined.status == 6)
            #expect(declined.stdout.contains("[y/N]"))
            #expect(try await cli.run(["budget", "show", sonnet]).status == 0)

            let deleted = try await cli.run(["budget", "delete", sonnet, "--yes"])
            #expect(deleted.status == 0, "\(deleted.stderr)")
            #expect(deleted.stdout.hasPrefix("deleted \(sonnet): removed"))
            let gone = try await cli.run(["budget", "show", sonnet, "--json"])
            #expect(gone.status == 3)
            #expect(try gone.jsonError["code"] as? String == "unknown_budget")
            #expect(gone.stdout.isEmpty)
        }
    }

    @Test("budget set refuses a new budget without limits, zero limits, bad shares and --burndown")
    func badSettings() async throws {
        try await CLIHarness.withFreshPrefix("budget-bad") { cli in
            let noLimit = try await cli.run(["budget", "set", sonnet, "--batch-ceiling", "0.5"])
            #expect(noLimit.status == 1)
            #expect(noLimit.stderr.contains("needs at least one limit"))
            for arguments in [["--rpm", "0"], ["--tpm", "-3"], ["--batch-ceiling", "150%"], ["--window-seconds", "0"], ["--burndown", "5"],
                              ["--rpm", "5", "--app-cap", "reports=0"], ["--rpm", "5", "--app-cap", "bad app=1"]] {
                let run = try await cli.run(["budget", "set", sonnet] + arguments)
                #expect(run.isUsageError, "\(arguments): \(run.stderr)")
            }
            let list = try await cli.run(["budget", "list"])
            #expect(list.stdout.contains("no budgets under prefix"))
        }
    }
}
