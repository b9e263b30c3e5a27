import ArgumentParser
import QuotaKeeper

/// `quotakeeper peaks NAME [--since 24h] [--headroom 15%]`
struct PeaksCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "peaks",
        abstract: "Peak, p95 and mean requests and tokens per minute, per app, and a suggested quota (peak plus headroom).",
        discussion: """
            From the per-minute history of settled calls. Statistics cover every minute from the first one with \
            settled calls in the span to the current minute (idle minutes count as 0). Plan for the larger of the \
            busiest minute and the sum of every app's own peak (apps peak at different times today, but may not \
            tomorrow), plus headroom: suggested = ceil(plan x (1 + headroom)). Each minute keeps a row for the \
            first apps that settled in it (50 by default, the budget's historyApps); later apps of the minute \
            share the row "other apps", so totals are exact and the sum of app peaks counts "other apps" as one app.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var budget: BudgetArgument
    var name: BudgetID { budget.id }
    @Option(help: ArgumentHelp("How far back to look (up to 7d, and only as far as the history is kept).", valueName: "duration"), transform: ArgumentSyntax.duration)
    var since: Duration = .seconds(86_400)
    @Option(help: ArgumentHelp("Headroom on top of the peak for the suggested quota: 0.15 or 15%.", valueName: "share"), transform: PeaksCommand.headroom)
    var headroom: Double = 0.15

    /// Peak, 95th percentile (nearest rank) and mean of per-minute values.
    struct Statistics: Sendable {
        var peak: Int
        var p95: Int
        var mean: Double

        init(_ values: [Int]) {
            let sorted = values.sorted()
            peak = sorted.last ?? 0
            p95 = sorted.isEmpty ? 0 : sorted[Int((Double(sorted.count) * 0.95).rounded(.up)) - 1]
            mean = sorted.isEmpty ? 0 : Double(sorted.reduce(0, +)) / Double(sorted.count)
        }

        var json: JSON { .object([("peak", .int(peak)), ("p95", .int(p95)), ("mean", .double((mean * 100).rounded() / 100))]) }
    }

    /// The statistics of one series of minutes (the budget, or one app).
    struct Series: Sendable {
        var requests: Int
        var tokens: Int
        var inputTokens: Int
        var outputTokens: Int
        var requestsPerMinute: Statistics
        var tokensPerMinute: Statistics
        var tokensPerRequest: Double? { perRequest(tokens) }
        var inputTokensPerRequest: Double? { perRequest(inputTokens) }
        var outputTokensPerRequest: Double? { perRequest(outputTokens) }

        init(requests: [Int], tokens: [Int], inputTokens: Int, outputTokens: Int) {
            self.requests = requests.reduce(0, +)
            self.tokens = tokens.reduce(0, +)
            self.inputTokens = inputTokens
            self.outputTokens = outputTokens
            requestsPerMinute = Statistics(requests)
            tokensPerMinute = Statistics(tokens)
        }

        private func perRequest(_ total: Int) -> Double? { requests > 0 ? Double(total) / Double(requests) : nil }

        var jsonMembers: [(String, JSON)] {
            func rounded(_ value: Double?) -> JSON { .optional(value.map { ($0 * 10).rounded() / 10 }) }
            return [
                ("requests", .int(requests)), ("tokens", .int(tokens)), ("requests_per_minute", requestsPerMinute.json),
                ("tokens_per_minute", tokensPerMinute.json),
                ("mean_tokens_per_request", rounded(tokensPerRequest)),
                ("mean_input_tokens_per_request", rounded(inputTokensPerRequest)),
                ("mean_output_tokens_per_request", rounded(outputTokensPerRequest)),
            ]
        }
    }

    static func headroom(_ text: String) throws -> Double {
        let isPercent = text.hasSuffix("%")
        guard let number = Double(isPercent ? String(text.dropLast()) : text), number.isFinite,
              (0...10).contains(isPercent ? number / 100 : number)
        else { throw ValidationError("invalid headroom '\(TerminalText.escaped(text))': use a fraction from 0 to 10 or a percentage such as 15%") }
        return isPercent ? number / 100 : number
    }

    func validate() throws { _ = try HistorySpan.minutes(since, option: "--since") }

    func execute() async throws {
        let minutes = try HistorySpan.minutes(since, option: "--since")
        try await connection.withLedger { ledger in
            let status = try await ledger.status(of: name)
            let history = try await ledger.history(of: name, minutes: minutes)
            var timeline = MinuteUsage.timeline(history, endingAt: status.nowMilliseconds, minutes: minutes)
            if let first = timeline.firstIndex(where: { $0.requests > 0 }) {
                timeline.removeFirst(first)
            } else {
                timeline = []
            }
            let total = Series(
                requests: timeline.map(\.requests), tokens: timeline.map(\.tokens),
                inputTokens: timeline.map(\.inputTokens).reduce(0, +), outputTokens: timeline.map(\.outputTokens).reduce(0, +))
            let appNames = Swift.Set(timeline.flatMap(\.apps.keys)).sorted()
            let apps = appNames.map { app in
                (app, Series(
                    requests: timeline.map { $0.apps[app]?.requests ?? 0 }, tokens: timeline.map { $0.apps[app]?.tokens ?? 0 },
                    inputTokens: timeline.map { $0.apps[app]?.inputTokens ?? 0 }.reduce(0, +),
                    outputTokens: timeline.map { $0.apps[app]?.outputTokens ?? 0 }.reduce(0, +)))
            }.sorted { ($0.1.tokens, $1.0) > ($1.1.tokens, $0.0) }
            let other = timeline.contains { $0.otherApps != nil } ? Series(
                requests: timeline.map { $0.otherApps?.requests ?? 0 }, tokens: timeline.map { $0.otherApps?.tokens ?? 0 },
                inputTokens: timeline.map { $0.otherApps?.inputTokens ?? 0 }.reduce(0, +),
                outputTokens: timeline.map { $0.otherApps?.outputTokens ?? 0 }.reduce(0, +)) : nil
            let peakRows = apps.map(\.1) + (other.map { [$0] } ?? [])
            let sumOfPeaks = (
                requests: peakRows.map(\.requestsPerMinute.peak).reduce(0, +), tokens: peakRows.map(\.tokensPerMinute.peak).reduce(0, +))
            let plan = (requests: max(total.requestsPerMinute.peak, sumOfPeaks.requests), tokens: max(total.tokensPerMinute.peak, sumOfPeaks.tokens))
            func suggest(_ value: Int) -> Int? { value > 0 ? Int((Double(value) * (1 + headroom)).rounded(.up)) : nil }
            let settings = BudgetSettings(status)
            let activeMinutes = timeline.filter { $0.requests > 0 }.count

            output.emit(.object([
                ("budget", .string(name.description)), ("since_minutes", .int(minutes)),
                ("minutes_observed", .int(timeline.count)), ("active_minutes", .int(activeMinutes)),
                ("first_minute_ms", .optional(timeline.first.map { Int($0.startMilliseconds) })),
            ] + total.jsonMembers + [
                ("apps", .array(apps.map { app, series in .object([("app", .string(app))] + series.jsonMembers) })),
                ("other_apps", other.map { .object($0.jsonMembers) } ?? .null),
                ("sum_of_app_peaks", .object([("requests_per_minute", .int(sumOfPeaks.requests)), ("tokens_per_minute", .int(sumOfPeaks.tokens))])),
                ("headroom", .double(headroom)),
                ("suggested", .object([("requests_per_minute", .optional(suggest(plan.requests))), ("tokens_per_minute", .optional(suggest(plan.tokens)))])),
                ("current_limits", .object([
                    ("requests_per_window", .optional(settings.requestsPerWindow)), ("tokens_per_window", .optional(settings.tokensPerWindow)),
                    ("tokens_per_day", .optional(settings.tokensPerDay)), ("window_ms", .int(Int(settings.windowMilliseconds))),
                ])),
            ])) {
                let style = Style.standardOutput
                guard !timeline.isEmpty else {
                    return "\(style.bold(name.description)): no settled calls in the last \(Format.duration(milliseconds: Int64(minutes) * 60_000))"
                }
                func row(_ label: String, _ series: Series) -> [String] {
                    [
                        label, Format.count(series.requestsPerMinute.peak), Format.count(series.requestsPerMinute.p95),
                        Format.decimal(series.requestsPerMinute.mean), Format.count(series.tokensPerMinute.peak),
                        Format.count(series.tokensPerMinute.p95), Format.decimal(series.tokensPerMinute.mean),
                        series.tokensPerRequest.map { Format.decimal($0) } ?? "-",
                        series.inputTokensPerRequest.map { Format.decimal($0) } ?? "-",
                        series.outputTokensPerRequest.map { Format.decimal($0) } ?? "-",
                    ]
                }
                var rows = [["", "PEAK RPM", "P95 RPM", "MEAN RPM", "PEAK TPM", "P95 TPM", "MEAN TPM", "TOKENS/REQ", "IN/REQ", "OUT/REQ"]]
                rows.append(row("all apps", total))
                for (app, series) in apps { rows.append(row(TerminalText.escaped(app), series)) }
                if let other { rows.append(row("(other apps)", other)) }
                func limit(_ value: Int?) -> String { value.map(Format.count) ?? "none" }
                let window = Format.duration(milliseconds: settings.windowMilliseconds)
                return [
                    "\(style.bold(name.description)): \(timeline.count) minute(s) observed (\(activeMinutes) with calls) since \(Format.timestamp(milliseconds: timeline[0].startMilliseconds))",
                    Table.render(rows, rightAligned: Swift.Set(1...9), style: style, indent: "  "),
                    "  sum of app peaks: \(Format.count(sumOfPeaks.requests)) RPM, \(Format.count(sumOfPeaks.tokens)) TPM",
                    "  suggested quota (max(peak, sum of app peaks) + \(Format.percent(headroom)) headroom): "
                        + style.bold("\(suggest(plan.requests).map(Format.count) ?? "-") RPM, \(suggest(plan.tokens).map(Format.count) ?? "-") TPM"),
                    "  current limits: \(limit(settings.requestsPerWindow)) requests and \(limit(settings.tokensPerWindow)) tokens per \(window), \(limit(settings.tokensPerDay)) tokens per day",
                    style.dim("  tokens are what the ledger charged: input + cache write + output x burndown; IN and OUT as Bedrock reported them"),
                ].joined(separator: "\n")
            }
        }
    }
}
