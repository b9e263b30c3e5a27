import ArgumentParser
import QuotaKeeper

/// `quotakeeper reserve NAME --input-tokens N --max-output-tokens M [--app A] [--priority P] [--dry-run]`
struct ReserveCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "reserve",
        abstract: "Make one real reservation through the ledger's reserve script; exit 0 if admitted, 2 if denied.",
        discussion: """
            Holds 1 request and input + max output tokens, as Bedrock does. By default the reservation stays \
            held until it leaves the window (like a call whose holder crashed). --dry-run releases it at once \
            (nothing stays counted), --settle charges it at once as if Bedrock reported the input tokens and \
            the max output tokens (output x burndown), so it also appears in the per-minute history.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var budget: BudgetArgument
    var name: BudgetID { budget.id }
    @Option(name: .customLong("input-tokens"), help: ArgumentHelp("Input token estimate.", valueName: "n"), transform: ArgumentSyntax.count("--input-tokens"))
    var inputTokens: Int
    @Option(name: .customLong("max-output-tokens"), help: ArgumentHelp("maxTokens of the call.", valueName: "n"), transform: ArgumentSyntax.count("--max-output-tokens"))
    var maxOutputTokens: Int
    @Option(help: ArgumentHelp("The calling app (1-64 characters of A-Z a-z 0-9 . _ -).", valueName: "app"))
    var app = "quotakeeper-cli"
    @Option(help: ArgumentHelp("interactive (the whole limit) or batch (up to the batch ceiling).", valueName: "priority"))
    var priority: Priority = .interactive
    @Flag(name: .customLong("dry-run"), help: "Release the reservation at once: only the decision is reported.")
    var dryRun = false
    @Flag(help: "Settle the reservation at once, charging the input and max output tokens.")
    var settle = false
    @Option(help: ArgumentHelp("Output burndown for --settle (default: the Bedrock table, 5 for Claude Sonnet/Opus 4.x, else 1).", valueName: "x"))
    var burndown: Double?

    func validate() throws {
        if dryRun && settle { throw ValidationError("--dry-run and --settle exclude each other") }
        if inputTokens + maxOutputTokens > 100_000_000 {
            throw ValidationError("--input-tokens plus --max-output-tokens must be at most 10^8, not \(inputTokens + maxOutputTokens)")
        }
        if let burndown, !(0...100).contains(burndown) { throw ValidationError("invalid --burndown '\(burndown)': must be from 0 to 100") }
        if burndown != nil && !settle { throw ValidationError("--burndown applies only with --settle") }
    }

    func execute() async throws {
        let table = burndown.map { BurndownTable(rates: [:], defaultRate: $0) } ?? .bedrockDefaults
        let admitted = try await connection.withLedger(burndown: table) { ledger -> Bool in
            var decision = Decision(budget: name, app: app, priority: priority, dryRun: dryRun, tokens: inputTokens + maxOutputTokens)
            do {
                let reservation = try await ledger.reserve(name, app: app, priority: priority, tokens: inputTokens + maxOutputTokens)
                decision.reservationID = reservation.id
                decision.admittedAtMilliseconds = Int(reservation.admittedAtMilliseconds)
                decision.probe = reservation.isProbe
                if dryRun {
                    try await reservation.release()
                    decision.outcome = "released"
                } else if settle {
                    let settlement = try await reservation.settle(usage: TokenUsage(inputTokens: inputTokens, outputTokens: maxOutputTokens))
                    decision.outcome = "settled"
                    decision.chargedTokens = settlement.chargedTokens
                } else {
                    decision.outcome = "held"
                }
            } catch let error as LedgerError where error.code == .budgetExhausted && error.denial != nil {
                decision.denial = error.denial
            }
            decision.report = try await BudgetReport.load(name, ledger: ledger, appMinutes: 1)
            output.emit(decision.json) { decision.text(style: .standardOutput) }
            return decision.denial == nil
        }
        if !admitted { throw ExitCode(ExitStatus.denied.rawValue) }
    }

    /// The decision and what the budget looked like right after it.
    struct Decision {
        var budget: BudgetID
        var app: String
        var priority: Priority
        var dryRun: Bool
        var tokens: Int
        var reservationID: String?
        /// The admission's Redis time (ms since 1970).
        var admittedAtMilliseconds: Int?
        var probe = false
        /// `held`, `released` or `settled` when admitted.
        var outcome: String?
        var chargedTokens: Int?
        var denial: Denial?
        var report: BudgetReport?

        var json: JSON {
            .object([
                ("budget", .string(budget.description)), ("admitted", .bool(denial == nil)), ("dry_run", .bool(dryRun)),
                ("app", .string(app)), ("priority", .string(priority.rawValue)), ("requests", .int(1)), ("tokens", .int(tokens)),
                ("reservation_id", .optional(reservationID)), ("admitted_at_ms", .optional(admittedAtMilliseconds)),
                ("probe", .bool(probe)), ("outcome", .optional(outcome)),
                ("charged_tokens", .optional(chargedTokens)),
                ("limit", .optional(denial?.reason.rawValue)), ("dimension", .optional(denial?.dimension)),
                ("seen_usage", .optional(denial?.usage)), ("seen_limit", .optional(denial?.limit)),
                ("retry_after_ms", .optional(denial?.retryAfter.map { Int($0.wholeMilliseconds) })),
                ("usage", report.map { .object($0.limits.map { ($0.name, BudgetReport.json($0)) }) } ?? .null),
            ])
        }

        func text(style: Style) -> String {
            var lines: [String] = []
            if let denial {
                let wait = denial.retryAfter.map { "retry after \(Format.duration(milliseconds: $0.wholeMilliseconds))" }
                    ?? "will not fit at this priority"
                let seen = denial.reason == .breakerOpen
                    ? (denial.limit > 0 ? " (half-open: \(denial.usage) of \(denial.limit) probes out)" : "")
                    : " (\(denial.dimension) \(Format.count(denial.usage)) of \(Format.count(denial.limit)))"
                lines.append(style.red("denied") + " by \(style.bold(denial.reason.rawValue))\(seen), \(wait)")
            } else {
                var line = style.green("admitted") + ": reservation \(reservationID ?? "-") on \(budget) holds 1 request and \(Format.count(tokens)) tokens (\(priority.rawValue), app \(app))"
                if probe { line += ", a half-open probe" }
                lines.append(line)
                switch outcome {
                case "released": lines.append("released at once (--dry-run): nothing stays counted")
                case "settled": lines.append("settled at once: charged \(Format.count(chargedTokens ?? 0)) tokens")
                default: lines.append("held: counts until it leaves the window (not settled)")
                }
            }
            if let report {
                let usage = report.limits.map { usage in
                    "\(usage.label) \(Format.count(usage.used))/\(usage.effectiveLimit.map(Format.count) ?? "-")"
                }
                lines.append("usage now: " + usage.joined(separator: ", "))
            }
            return lines.joined(separator: "\n")
        }
    }
}

extension Priority: ExpressibleByArgument {}
