import ArgumentParser
import QuotaKeeper

/// `quotakeeper budget set|list|show|delete`.
struct BudgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget",
        abstract: "Create, change, list, show and delete budgets.",
        subcommands: [Set.self, List.self, Show.self, Delete.self]
    )
}

extension BudgetCommand {
    /// `budget set NAME [--rpm N] [--tpm N] [--tokens-per-day N] [--window-seconds S] [--batch-ceiling F] ...`
    struct Set: FailureReportingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a budget, or change the given settings of an existing one (usage is kept).",
            discussion: """
                Limits take a whole number or 'none' (removes the limit). A new budget needs at least one limit. \
                Output burndown is not a budget setting: every instance applies its own burndown table when it \
                settles, so --burndown is refused here (see 'quotakeeper reserve --burndown').
                """)

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var budget: BudgetArgument
        var name: BudgetID { budget.id }
        @Option(help: ArgumentHelp("Requests per window (RPM for a 60 s window), or none.", valueName: "n"), transform: ArgumentSyntax.limit)
        var rpm: LimitSetting?
        @Option(help: ArgumentHelp("Tokens per window (TPM for a 60 s window), or none.", valueName: "n"), transform: ArgumentSyntax.limit)
        var tpm: LimitSetting?
        @Option(name: .customLong("tokens-per-day"), help: ArgumentHelp("Tokens per day window, or none.", valueName: "n"), transform: ArgumentSyntax.limit)
        var tokensPerDay: LimitSetting?
        @Option(
            name: .customLong("window-seconds"), help: ArgumentHelp("Length of the sliding window (default 60).", valueName: "s"),
            transform: ArgumentSyntax.count("--window-seconds", minimum: 1, maximum: 86_400))
        var windowSeconds: Int?
        @Option(
            help: ArgumentHelp("Buckets per window (the ledger's granularity is window / buckets; default: 60, or the largest that divides the window).", valueName: "n"),
            transform: ArgumentSyntax.count("--buckets", minimum: 1, maximum: 600))
        var buckets: Int?
        @Option(name: .customLong("batch-ceiling"), help: ArgumentHelp("Share of every limit batch callers may use: 0.8 or 80%.", valueName: "share"), transform: ArgumentSyntax.share)
        var batchCeiling: Double?
        @Option(name: .customLong("effective-ceiling"), help: ArgumentHelp("Share of every limit admitted at all: 0.01 to 1 or 1% to 100%.", valueName: "share"), transform: ArgumentSyntax.share)
        var effectiveCeiling: Double?
        @Option(name: .customLong("in-flight"), help: ArgumentHelp("Limit on calls in flight, or none.", valueName: "n"), transform: ArgumentSyntax.limit)
        var inFlight: LimitSetting?
        @Option(
            name: .customLong("app-cap"),
            help: ArgumentHelp("An app's share of the window limits, APP=SHARE (checkout=50%) or APP=none; repeatable.", valueName: "app=share"),
            transform: ArgumentSyntax.appCap)
        var appCaps: [AppCapSetting] = []
        @Option(
            name: .customLong("history-apps"),
            help: ArgumentHelp("Apps of each minute with a history row of their own (default 50); later apps share 'other apps'.", valueName: "n"),
            transform: ArgumentSyntax.count("--history-apps", minimum: 1, maximum: 1000))
        var historyApps: Int?
        @Option(help: ArgumentHelp("Not a budget setting; refused with an explanation.", visibility: .hidden))
        var burndown: Double?

        func validate() throws {
            if burndown != nil {
                throw ValidationError(
                    "--burndown is not stored in Redis: each instance applies its BurndownTable when it settles (QuotaLedger(burndown:)); configure it in the services")
            }
            if case .value(let limit)? = inFlight, limit > 1_000_000 {
                throw ValidationError("invalid --in-flight '\(limit)': use a whole number from 1 to 1000000, or 'none'")
            }
        }

        func execute() async throws {
            try await connection.withLedger { ledger in
                let existing: BudgetStatus?
                do {
                    existing = try await ledger.status(of: name)
                } catch let error as LedgerError where error.code == .unknownBudget {
                    existing = nil
                }
                var configuration = existing.map { BudgetSettings($0).configuration(of: name) }
                    ?? BudgetConfiguration(id: name, limits: .init())
                if let rpm { configuration.limits.requestsPerWindow = rpm.value }
                if let tpm { configuration.limits.tokensPerWindow = tpm.value }
                if let tokensPerDay { configuration.limits.tokensPerDay = tokensPerDay.value }
                if let windowSeconds {
                    configuration.window = .seconds(windowSeconds)
                    configuration.bucketCount = buckets ?? Self.defaultBuckets(windowMilliseconds: windowSeconds * 1000)
                } else if let buckets {
                    configuration.bucketCount = buckets
                }
                if let batchCeiling { configuration.batchCeiling = batchCeiling }
                if let effectiveCeiling { configuration.effectiveCeiling = effectiveCeiling }
                if let inFlight {
                    configuration.inFlight = inFlight.value.map { .init(limit: $0, lease: configuration.inFlight?.lease ?? .seconds(120)) }
                }
                for cap in appCaps { configuration.appCaps[cap.app] = cap.share }
                if let historyApps { configuration.historyApps = historyApps }
                let limits = configuration.limits
                guard limits.requestsPerWindow != nil || limits.tokensPerWindow != nil || limits.tokensPerDay != nil else {
                    throw CLIFailure(.invalidInput, "budget \(name) needs at least one limit: --rpm, --tpm or --tokens-per-day")
                }
                if existing == nil {
                    try await ledger.seed(configuration)
                } else {
                    try await ledger.updateBudget(configuration)
                }
                let stored = BudgetSettings(try await ledger.status(of: name))
                StandardStream.output.write("\(existing == nil ? "created" : "updated") \(name)\n" + stored.table(style: .standardOutput) + "\n")
            }
        }

        /// 60 buckets if they divide the window evenly, else the largest count under 60 that does.
        static func defaultBuckets(windowMilliseconds: Int) -> Int {
            (1...60).reversed().first { windowMilliseconds % $0 == 0 } ?? 1
        }
    }

    /// `budget list`
    struct List: JSONOutputCommand {
        static let configuration = CommandConfiguration(abstract: "List the budgets under the prefix with their limits.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func execute() async throws {
            try await connection.withLedger { ledger in
                var entries: [(BudgetID, BudgetSettings)] = []
                for budget in try await ledger.listBudgets() {
                    do {
                        entries.append((budget, BudgetSettings(try await ledger.status(of: budget))))
                    } catch let error as LedgerError where error.code == .unknownBudget {
                        continue  // deleted between SCAN and read
                    }
                }
                output.emit(.object([
                    ("prefix", .string(connection.resolvedPrefix)),
                    ("budgets", .array(entries.map { budget, settings in
                        .object([
                            ("budget", .string(budget.description)), ("model", .string(budget.model)), ("region", .string(budget.region)),
                            ("requests_per_window", .optional(settings.requestsPerWindow)),
                            ("tokens_per_window", .optional(settings.tokensPerWindow)),
                            ("tokens_per_day", .optional(settings.tokensPerDay)),
                            ("window_ms", .int(Int(settings.windowMilliseconds))),
                            ("effective_ceiling", .double(settings.effectiveCeiling)),
                        ])
                    })),
                ])) {
                    if entries.isEmpty { return "no budgets under prefix '\(connection.resolvedPrefix)'" }
                    func limit(_ value: Int?) -> String { value.map(Format.count) ?? "-" }
                    var rows = [["BUDGET", "RPM", "TPM", "TOKENS/DAY", "WINDOW", "CEILING"]]
                    for (budget, settings) in entries {
                        rows.append([
                            TerminalText.escaped(budget.description), limit(settings.requestsPerWindow), limit(settings.tokensPerWindow),
                            limit(settings.tokensPerDay), Format.duration(milliseconds: settings.windowMilliseconds),
                            Format.percent(settings.effectiveCeiling),
                        ])
                    }
                    return Table.render(rows, rightAligned: [1, 2, 3, 4, 5], style: .standardOutput)
                }
            }
        }
    }

    /// `budget show NAME`
    struct Show: JSONOutputCommand {
        static let configuration = CommandConfiguration(abstract: "Show every setting of a budget, including its breaker's.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var budget: BudgetArgument
        var name: BudgetID { budget.id }

        func execute() async throws {
            try await connection.withLedger { ledger in
                let status = try await ledger.status(of: name)
                let settings = BudgetSettings(status)
                output.emit(.object([
                    ("budget", .string(name.description)), ("model", .string(name.model)), ("region", .string(name.region)),
                    ("epoch_ms", .int(Int(status.epoch))), ("configuration", settings.json),
                ])) {
                    Style.standardOutput.bold(name.description) + "\n" + settings.table(style: .standardOutput)
                }
            }
        }
    }

    /// `budget delete NAME`
    struct Delete: FailureReportingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a budget: its configuration, usage, leases, breaker and history (asks unless --yes).")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var confirmation: ConfirmationOptions
        @OptionGroup var budget: BudgetArgument
        var name: BudgetID { budget.id }

        func execute() async throws {
            try await connection.withLedger { ledger in
                _ = try await ledger.status(of: name)  // unknown budget: exit 3 before asking
                try confirmation.confirm("Delete budget \(name) and all its keys for the whole fleet?")
                let removed = try await ledger.deleteBudget(name)
                StandardStream.output.write("deleted \(name): removed \(removed) keys\n")
            }
        }
    }
}
