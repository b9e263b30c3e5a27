import ArgumentParser
import QuotaKeeper

/// `quotakeeper`: see, change and reset the fleet's budgets and breakers.
///
/// swift-argument-parser's own `main()` parses, prints help and usage errors (exit 64, `EX_USAGE`, with the
/// usage) and runs the command; each command reports its own failures (`FailureReportingCommand`).
@main
struct QuotaKeeperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotakeeper",
        abstract: "See, change and reset the fleet's Bedrock budgets and breakers.",
        discussion: """
            Budgets are named MODEL@REGION, e.g. anthropic.claude-sonnet-4-5-20250929-v1:0@us-east-1.

            Exit codes: 0 ok, 1 invalid input, 2 reservation denied, 3 unknown budget, 4 Redis unavailable, \
            5 Redis refused the credentials or a permission, 6 not confirmed, 7 unexpected reply, \
            64 usage error (docs/cli.md).
            """,
        subcommands: [
            BudgetCommand.self, StatusCommand.self, InspectCommand.self, PeaksCommand.self, ReserveCommand.self,
            ResetCommand.self, BreakerCommand.self, WatchCommand.self, ExportCommand.self,
        ]
    )
}
