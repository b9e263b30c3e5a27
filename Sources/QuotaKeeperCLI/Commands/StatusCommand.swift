import ArgumentParser
import QuotaKeeper

/// `quotakeeper status [NAME]`
struct StatusCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Usage against every limit in the current window, in flight, breaker, ceiling and top apps: of the budget named, else of every budget under the prefix.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var budget: OptionalBudgetArgument
    var name: BudgetID? { budget.id }
    @Option(name: .customLong("apps-since"), help: ArgumentHelp("How far back top apps are summed (whole minutes, up to 7d).", valueName: "duration"), transform: ArgumentSyntax.duration)
    var appsSince: Duration = .seconds(300)

    func validate() throws { _ = try HistorySpan.minutes(appsSince, option: "--apps-since") }

    func execute() async throws {
        let minutes = try HistorySpan.minutes(appsSince, option: "--apps-since")
        try await connection.withLedger { ledger in
            let reports = try await StatusCommand.reports(name, ledger: ledger, appMinutes: minutes)
            output.emit(StatusCommand.json(reports, prefix: connection.resolvedPrefix)) {
                StatusCommand.text(reports, prefix: connection.resolvedPrefix, style: .standardOutput)
            }
        }
    }

    /// The report of `name`, or of every budget under the prefix (skipping any deleted meanwhile).
    static func reports(_ name: BudgetID?, ledger: QuotaLedger, appMinutes: Int) async throws -> [BudgetReport] {
        if let name { return [try await BudgetReport.load(name, ledger: ledger, appMinutes: appMinutes)] }
        var reports: [BudgetReport] = []
        for budget in try await ledger.listBudgets() {
            do {
                reports.append(try await BudgetReport.load(budget, ledger: ledger, appMinutes: appMinutes))
            } catch let error as LedgerError where error.code == .unknownBudget {
                continue
            }
        }
        return reports
    }

    static func json(_ reports: [BudgetReport], prefix: String) -> JSON {
        .object([("prefix", .string(prefix)), ("budgets", .array(reports.map(\.json)))])
    }

    static func text(_ reports: [BudgetReport], prefix: String, style: Style) -> String {
        if reports.isEmpty { return "no budgets under prefix '\(prefix)'" }
        return reports.map { $0.text(style: style) }.joined(separator: "\n\n")
    }
}

/// Whole minutes of per-minute history for a duration option (checked in `validate()`: a usage error).
enum HistorySpan {
    /// `duration` in whole minutes, 1...10080 (7 days, what the history script reads at most); a duration that
    /// is not a whole number of minutes (`30s`, `90s`) is refused rather than rounded.
    static func minutes(_ duration: Duration, option: String) throws -> Int {
        let milliseconds = duration.wholeMilliseconds
        guard milliseconds % 60_000 == 0 else {
            throw ValidationError(
                "\(option) must be whole minutes (the history is kept per minute), e.g. 1m, 5m, 2h, not \(Format.duration(milliseconds: milliseconds))")
        }
        let minutes = Int(milliseconds / 60_000)
        guard (1...10_080).contains(minutes) else {
            throw ValidationError("\(option) must be at most 7d (the history kept), not \(Format.duration(milliseconds: milliseconds))")
        }
        return minutes
    }
}
