import ArgumentParser
import QuotaKeeper

/// `quotakeeper inspect NAME`
struct InspectCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "One budget in depth: the window bucket by bucket, headroom per priority, apps, breaker counters, recent minutes.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var budget: BudgetArgument
    var name: BudgetID { budget.id }
    @Option(help: ArgumentHelp("How many recent minutes of history to show.", valueName: "duration"), transform: ArgumentSyntax.duration)
    var since: Duration = .seconds(900)

    func validate() throws { _ = try HistorySpan.minutes(since, option: "--since") }

    func execute() async throws {
        let minutes = try HistorySpan.minutes(since, option: "--since")
        try await connection.withLedger { ledger in
            let report = try await BudgetReport.load(name, ledger: ledger, appMinutes: minutes)
            let history = try await ledger.history(of: name, minutes: minutes)
            let recent = MinuteUsage.timeline(history, endingAt: report.status.nowMilliseconds, minutes: minutes)
            output.emit(json(report, recent)) { text(report, recent, style: .standardOutput) }
        }
    }

    private func json(_ report: BudgetReport, _ recent: [MinuteUsage]) -> JSON {
        func buckets(_ usage: BudgetStatus.WindowUsage) -> JSON {
            .array(usage.buckets.map {
                .object([("start_ms", .int(Int($0.startMilliseconds))), ("requests", .optional($0.requests)), ("tokens", .int($0.tokens))])
            })
        }
        let status = report.status
        return .object([
            ("budget", .string(name.description)), ("now_ms", .int(Int(status.nowMilliseconds))),
            ("epoch_ms", .int(Int(status.epoch))), ("reservations", .int(Int(status.reservations))),
            ("window", .object([
                ("window_ms", .int(Int(status.window.windowMilliseconds))),
                ("granularity_ms", .int(Int(status.window.granularityMilliseconds))),
                ("requests", .optional(status.window.requests)), ("tokens", .int(status.window.tokens)),
                ("buckets", buckets(status.window)),
            ])),
            ("day", .object([
                ("window_ms", .int(Int(status.day.windowMilliseconds))),
                ("granularity_ms", .int(Int(status.day.granularityMilliseconds))),
                ("tokens", .int(status.day.tokens)), ("buckets", buckets(status.day)),
            ])),
            ("priorities", .object(Priority.allCases.map { priority in
                (priority.rawValue, .object(report.limits.map { usage in
                    let limit = priority == .batch ? usage.batchLimit : usage.effectiveLimit
                    return (usage.name, .object([
                        ("limit", .optional(limit)), ("available", .optional(limit.map { max(0, $0 - usage.used) })),
                    ]))
                }))
            })),
            ("usage", .object(report.limits.map { ($0.name, BudgetReport.json($0)) })),
            ("in_flight", .object([("used", .int(status.inFlight)), ("limit", .optional(report.settings.inFlightLimit))])),
            ("waiting", BudgetReport.json(report.line)),
            ("apps", .array(report.topApps.map {
                .object([("app", .string($0.app)), ("requests", .int($0.requests)), ("tokens", .int($0.tokens))])
            })),
            ("capped_apps", .object(status.apps.sorted { $0.key < $1.key }.map { app, usage in
                (app, .object([("cap", .double(usage.cap)), ("requests", .int(usage.requests)), ("tokens", .int(usage.tokens))]))
            })),
            ("breaker", BudgetReport.json(status.breaker)),
            ("history_minutes", .int(recent.count)),
            ("history", .array(recent.map {
                .object([("start_ms", .int(Int($0.startMilliseconds))), ("requests", .int($0.requests)), ("tokens", .int($0.tokens))])
            })),
        ])
    }

    private func text(_ report: BudgetReport, _ recent: [MinuteUsage], style: Style) -> String {
        let status = report.status
        var sections = [report.text(style: style)]

        // The window bucket by bucket (only buckets holding usage, and the newest).
        let tokensLimit = report.limits[1].effectiveLimit
        let largest = status.window.buckets.map(\.tokens).max() ?? 0
        var rows = [["BUCKET", "AGE", "REQUESTS", "TOKENS", ""]]
        for bucket in status.window.buckets {
            let share = tokensLimit.map { Double(bucket.tokens) / Double(max($0, 1)) }
                ?? (largest > 0 ? Double(bucket.tokens) / Double(largest) : 0)
            rows.append([
                Format.timestamp(milliseconds: bucket.startMilliseconds),
                "-" + Format.duration(milliseconds: max(0, status.nowMilliseconds - bucket.startMilliseconds)),
                bucket.requests.map(Format.count) ?? "-", Format.count(bucket.tokens), style.bar(share, width: 16),
            ])
        }
        sections.append(
            "window: \(Format.duration(milliseconds: status.window.windowMilliseconds)) in buckets of "
                + "\(Format.duration(milliseconds: status.window.granularityMilliseconds)) (bars: tokens against the limit)\n"
                + Table.render(rows, rightAligned: [1, 2, 3], style: style, indent: "  "))

        // Headroom per priority.
        var priorityRows = [["PRIORITY", "REQUESTS", "TOKENS", "DAY TOKENS"]]
        for priority in Priority.allCases {
            priorityRows.append([priority.rawValue] + report.limits.map { usage in
                let limit = priority == .batch ? usage.batchLimit : usage.effectiveLimit
                return limit.map { "\(Format.count(max(0, $0 - usage.used))) of \(Format.count($0)) free" } ?? "no limit"
            })
        }
        sections.append("headroom by priority:\n" + Table.render(priorityRows, style: style, indent: "  "))

        // Apps over the span.
        var appRows = [["APP", "REQUESTS", "TOKENS"]]
        for app in report.topApps { appRows.append([TerminalText.escaped(app.app), Format.count(app.requests), Format.count(app.tokens)]) }
        sections.append(
            "apps (settled, last \(recent.count)m):\n"
                + (report.topApps.isEmpty ? "  none" : Table.render(appRows, rightAligned: [1, 2], style: style, indent: "  ")))

        // Breaker counters.
        let breaker = status.breaker
        sections.append(
            "breaker: \(BudgetReport.breakerText(breaker, now: status.nowMilliseconds, style: style)); "
                + "\(breaker.failures) failures of \(breaker.calls) calls in its window, "
                + "\(breaker.consecutiveFailures) consecutive, \(breaker.openings) openings in a row, "
                + "\(breaker.activeProbes) probes out, \(breaker.probeSuccesses) probe successes, "
                + "\(breaker.failingInstances) failing instances")

        // Recent minutes.
        sections.append(
            "last \(recent.count) minutes (settled; one character per minute, oldest first):\n"
                + "  requests |\(Style.sparkline(recent.map(\.requests)))|  peak \(Format.count(recent.map(\.requests).max() ?? 0))/min\n"
                + "  tokens   |\(Style.sparkline(recent.map(\.tokens)))|  peak \(Format.count(recent.map(\.tokens).max() ?? 0))/min")
        return sections.joined(separator: "\n\n")
    }
}
