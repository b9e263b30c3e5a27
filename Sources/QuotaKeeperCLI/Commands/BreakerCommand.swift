import ArgumentParser
import QuotaKeeper

/// `quotakeeper breaker status|open|close|disable|enable|reset NAME`
struct BreakerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breaker",
        abstract: "See and operate a budget's fleet-wide circuit breaker.",
        subcommands: [Status.self, Open.self, Close.self, Disable.self, Enable.self, Reset.self]
    )

    /// The options of every breaker subcommand.
    struct Target: ParsableArguments {
        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var budget: BudgetArgument
        var name: BudgetID { budget.id }

        /// Runs `action`, then prints the breaker as it is now, after the note `action` returns (what it did).
        func run(_ action: @Sendable (QuotaLedger, BudgetID) async throws -> String?) async throws {
            try await connection.withLedger { ledger in
                _ = try await ledger.status(of: name)  // an unknown budget fails here, before any change
                let note = try await action(ledger, name)
                let status = try await ledger.status(of: name)
                output.emit(.object([
                    ("budget", .string(name.description)), ("now_ms", .int(Int(status.nowMilliseconds))),
                    ("breaker", BudgetReport.json(status.breaker)),
                ])) {
                    let style = Style.standardOutput
                    let breaker = status.breaker
                    var lines = [(note.map { "\($0); " } ?? "") + "breaker of \(style.bold(name.description)): "
                        + BudgetReport.breakerText(breaker, now: status.nowMilliseconds, style: style)]
                    lines.append(Table.render([
                        ["CALLS", "FAILURES", "CONSECUTIVE", "OPENINGS", "PROBES OUT", "PROBE SUCCESSES", "FAILING INSTANCES"],
                        [breaker.calls, breaker.failures, breaker.consecutiveFailures, breaker.openings, breaker.activeProbes,
                         breaker.probeSuccesses, breaker.failingInstances].map { Format.count($0) },
                    ], rightAligned: Set(0...6), style: style, indent: "  "))
                    return lines.joined(separator: "\n")
                }
            }
        }
    }

    struct Status: JSONOutputCommand {
        static let configuration = CommandConfiguration(abstract: "Show the breaker's state and counters.")
        @OptionGroup var target: Target
        func execute() async throws { try await target.run { _, _ in nil } }
    }

    struct Open: JSONOutputCommand {
        static let configuration = CommandConfiguration(
            abstract: "Force the breaker open for every instance: calls are refused until --for ends (then it probes) or until closed.")
        @OptionGroup var target: Target
        @Option(name: .customLong("for"), help: ArgumentHelp("How long, e.g. 90s, 5m (default: until 'breaker close').", valueName: "duration"), transform: ArgumentSyntax.duration)
        var duration: Duration?

        func execute() async throws {
            let duration = duration
            try await target.run { ledger, budget in
                try await ledger.forceOpenBreaker(of: budget, for: duration)
                return "opened" + (duration.map { " for \(Format.duration(milliseconds: $0.wholeMilliseconds))" } ?? " until closed")
            }
        }
    }

    struct Close: BreakerAction {
        static let configuration = CommandConfiguration(
            abstract: "Close the breaker now (clears its failure window and probes; keeps the opening count; ends disabled).")
        static let done = "closed"
        @OptionGroup var target: Target
        static func apply(_ ledger: QuotaLedger, _ budget: BudgetID) async throws { try await ledger.closeBreaker(of: budget) }
    }

    struct Disable: BreakerAction {
        static let configuration = CommandConfiguration(abstract: "Disable the breaker: it never trips, outcomes are still counted (a dry run).")
        static let done = "disabled"
        @OptionGroup var target: Target
        static func apply(_ ledger: QuotaLedger, _ budget: BudgetID) async throws { try await ledger.disableBreaker(of: budget) }
    }

    struct Enable: JSONOutputCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enable a disabled breaker (it closes); any other state is left as it is.")
        @OptionGroup var target: Target
        func execute() async throws {
            try await target.run { ledger, budget in
                guard try await ledger.breakerStatus(of: budget).state == .disabled else { return "not disabled; left as it is" }
                try await ledger.closeBreaker(of: budget)
                return "enabled"
            }
        }
    }

    struct Reset: BreakerAction {
        static let configuration = CommandConfiguration(abstract: "Close the breaker and clear every counter, including the opening count.")
        static let done = "reset"
        @OptionGroup var target: Target
        static func apply(_ ledger: QuotaLedger, _ budget: BudgetID) async throws { try await ledger.resetBreaker(of: budget) }
    }
}

/// A breaker subcommand that runs one ledger operation and then shows the breaker.
protocol BreakerAction: JSONOutputCommand {
    var target: BreakerCommand.Target { get }
    /// What the operation did, shown before the breaker's state (`closed`, `disabled`, `reset`).
    static var done: String { get }
    static func apply(_ ledger: QuotaLedger, _ budget: BudgetID) async throws
}

extension BreakerAction {
    func execute() async throws {
        try await target.run { ledger, budget in
            try await Self.apply(ledger, budget)
            return Self.done
        }
    }
}
