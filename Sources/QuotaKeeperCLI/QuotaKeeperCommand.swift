import ArgumentParser
import Foundation
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

    /// Parses and runs the command; every failure becomes one line on stderr (JSON with `--json`) and a
    /// documented exit code (see `ExitStatus`), never a stack trace.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let json = arguments.contains("--json")
        let command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            if exitCode(for: error) == .success {
                StandardStream.output.write(fullMessage(for: error) + "\n")
                Foundation.exit(0)
            }
            let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
            CLIFailure(.invalidInput, message + " (see 'quotakeeper help')").report(json: json)
            Foundation.exit(ExitStatus.invalidInput.rawValue)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch where exitCode(for: error) == .success {
            StandardStream.output.write(fullMessage(for: error) + "\n")  // a command group run alone: its help
        } catch {
            let failure = CLIFailure(error)
            failure.report(json: json)
            Foundation.exit(failure.status.rawValue)
        }
        Foundation.exit(0)
    }
}
