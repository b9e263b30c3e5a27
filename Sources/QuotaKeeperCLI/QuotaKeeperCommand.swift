import ArgumentParser
import QuotaKeeper

/// `quotakeeper`: see, change and reset the fleet's budgets and breakers.
@main
struct QuotaKeeperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotakeeper",
        abstract: "See, change and reset the fleet's Bedrock budgets and breakers.",
        discussion: """
            Budgets are named MODEL@REGION, e.g. anthropic.claude-sonnet-4-5-20250929-v1:0@us-east-1.

            Exit codes: 0 ok, 1 invalid input, 2 reservation denied, 3 unknown budget, 4 Redis unavailable, \
            5 Redis refused the credentials or a permission, 6 not confirmed, 7 unexpected reply (docs/cli.md).
            """,
        subcommands: [
            BudgetCommand.self, StatusCommand.self, InspectCommand.self, PeaksCommand.self, ReserveCommand.self,
            ResetCommand.self, BreakerCommand.self, WatchCommand.self, ExportCommand.self,
        ]
    )

    /// Parses and runs the command with swift-argument-parser's own parsing, help and exit (`parseAsRoot`,
    /// `exit(withError:)`). A failure becomes one line on stderr (JSON when `--json` was given: the parsed
    /// command's own flag, or the parser's reading of the arguments when they did not parse) and a documented
    /// exit code (`ExitStatus`, ended through the parser's `ExitCode`), never a stack trace.
    ///
    /// The parser's default `main()` is not used as it is: it ends usage errors with 64 (`EX_USAGE`) and a
    /// usage block, where `quotakeeper` documents exit 1 and one line (docs/cli.md, "Exit codes").
    static func main() async {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch where exitCode(for: error) == .success {
            exit(withError: error)  // --help, `help`: the parser prints them and exits 0
        } catch {
            fail(
                CLIFailure(.invalidInput, message(for: error) + " (see 'quotakeeper help')"),
                json: OutputOptions.requested(in: Array(CommandLine.arguments.dropFirst())))
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch where error is ExitCode || exitCode(for: error) == .success {
            exit(withError: error)  // an exit code the command chose (its output written), or a group's help
        } catch {
            fail(CLIFailure(error), json: (command as? any JSONOutputCommand)?.output.json ?? false)
        }
        exit()
    }

    /// Reports `failure` on stderr and exits with its status.
    private static func fail(_ failure: CLIFailure, json: Bool) -> Never {
        failure.report(json: json)
        exit(withError: ExitCode(failure.status.rawValue))
    }
}
