import ArgumentParser
import QuotaKeeper

/// `quotakeeper reset NAME | --all [--yes]`
struct ResetCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Clear the usage of one budget or of all (asks unless --yes); configuration, breaker and history stay.",
        discussion: """
            Clears the window and day usage, per-app usage and in-flight leases, and reports what it cleared. \
            Reservations made before the reset settle without touching the new windows.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var confirmation: ConfirmationOptions
    @OptionGroup var budget: OptionalBudgetArgument
    var name: BudgetID? { budget.id }
    @Flag(help: "Reset every budget under the prefix.") var all = false

    func validate() throws {
        if (name == nil) == !all { throw ValidationError("give either a budget NAME or --all") }
    }

    func execute() async throws {
        try await connection.withLedger { ledger in
            let reports = try await StatusCommand.reports(name, ledger: ledger, appMinutes: 1)
            if reports.isEmpty {
                output.emit(.object([("prefix", .string(connection.resolvedPrefix)), ("reset", .array([]))])) {
                    "no budgets under prefix '\(connection.resolvedPrefix)': nothing to reset"
                }
                return
            }
            let names = reports.map { TerminalText.escaped($0.budget.description) }
            let subject = names.count == 1 ? "budget \(names[0])" : "\(names.count) budgets (\(names.joined(separator: ", ")))"
            try confirmation.confirm("Reset the usage of \(subject) for the whole fleet?")
            var cleared: [BudgetReport] = []
            for report in reports {
                do {
                    try await ledger.resetUsage(of: report.budget)
                    cleared.append(report)
                } catch let error as LedgerError where error.code == .unknownBudget && all {
                    continue  // deleted meanwhile
                }
            }
            output.emit(.object([
                ("prefix", .string(connection.resolvedPrefix)),
                ("reset", .array(cleared.map { report in
                    .object([
                        ("budget", .string(report.budget.description)),
                        ("cleared", .object([
                            ("requests", .int(report.status.window.requests ?? 0)), ("tokens", .int(report.status.window.tokens)),
                            ("day_tokens", .int(report.status.day.tokens)), ("in_flight", .int(report.status.inFlight)),
                        ])),
                    ])
                })),
            ])) {
                cleared.map { report in
                    "reset \(report.budget): cleared \(Format.count(report.status.window.requests ?? 0)) requests and "
                        + "\(Format.count(report.status.window.tokens)) tokens from the \(Format.duration(milliseconds: report.status.window.windowMilliseconds)) window, "
                        + "\(Format.count(report.status.day.tokens)) tokens from the day window, \(Format.count(report.status.inFlight)) in-flight leases "
                        + "(configuration, breaker and history kept)"
                }.joined(separator: "\n")
            }
        }
    }
}
