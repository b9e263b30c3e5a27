import QuotaKeeper

/// What `status`, `watch` and `inspect` show of one budget: usage against limits, breaker, top apps.
struct BudgetReport: Sendable {
    let budget: BudgetID
    let status: BudgetStatus
    let settings: BudgetSettings
    /// Settled requests and tokens per app over the last `appMinutes` minutes, most tokens first.
    let topApps: [AppTotal]
    let appMinutes: Int
    /// Who waits in the budget's waiting line, per class.
    let line: WaitingLineStatus

    struct AppTotal: Sendable {
        var app: String
        var requests: Int
        var tokens: Int
    }

    /// One limit's use in its window.
    struct LimitUsage: Sendable {
        /// `rpm`, `tpm` or `tpd` (the names denials use).
        var name: String
        var label: String
        var used: Int
        /// The configured limit (nil = none).
        var limit: Int?
        /// What interactive callers may use: limit x effective ceiling.
        var effectiveLimit: Int?
        /// What batch callers may use: limit x effective ceiling x batch ceiling.
        var batchLimit: Int?
        var windowMilliseconds: Int64

        var fraction: Double? {
            guard let effectiveLimit, effectiveLimit > 0 else { return nil }
            return Double(used) / Double(effectiveLimit)
        }
    }

    /// Reads the budget and the per-app history of its last `appMinutes` minutes (`ledger_read` + `TIME` + the history minutes)
    /// and the waiting line (2 ZRANGE).
    static func load(_ budget: BudgetID, ledger: QuotaLedger, appMinutes: Int) async throws -> BudgetReport {
        let status = try await ledger.status(of: budget)
        var totals: [String: AppTotal] = [:]
        for minute in try await ledger.history(of: budget, minutes: appMinutes) {
            for (app, usage) in minute.apps {
                totals[app, default: AppTotal(app: app, requests: 0, tokens: 0)].requests += usage.requests
                totals[app, default: AppTotal(app: app, requests: 0, tokens: 0)].tokens += usage.tokens
            }
        }
        let top = totals.values.sorted { ($0.tokens, $0.requests, $1.app) > ($1.tokens, $1.requests, $0.app) }
        let line = try await ledger.waitingLine(of: budget, now: status.nowMilliseconds)
        return BudgetReport(
            budget: budget, status: status, settings: BudgetSettings(status), topApps: Array(top.prefix(5)),
            appMinutes: appMinutes, line: line)
    }

    var limits: [LimitUsage] {
        func usage(_ name: String, _ label: String, _ used: Int, _ limit: Int?, _ window: Int64) -> LimitUsage {
            let effective = limit.map { Int((Double($0) * settings.effectiveCeiling).rounded(.down)) }
            let batch = limit.map { Int((Double($0) * settings.effectiveCeiling * settings.batchCeiling).rounded(.down)) }
            return LimitUsage(
                name: name, label: label, used: used, limit: limit, effectiveLimit: effective, batchLimit: batch,
                windowMilliseconds: window)
        }
        return [
            usage("rpm", "requests", status.window.requests ?? 0, settings.requestsPerWindow, settings.windowMilliseconds),
            usage("tpm", "tokens", status.window.tokens, settings.tokensPerWindow, settings.windowMilliseconds),
            usage("tpd", "day tokens", status.day.tokens, settings.tokensPerDay, settings.dayWindowMilliseconds),
        ]
    }

    // MARK: JSON

    var json: JSON {
        .object([
            ("budget", .string(budget.description)), ("model", .string(budget.model)), ("region", .string(budget.region)),
            ("now_ms", .int(Int(status.nowMilliseconds))),
            ("usage", .object(limits.map { ($0.name, Self.json($0)) })),
            ("in_flight", .object([("used", .int(status.inFlight)), ("limit", .optional(settings.inFlightLimit))])),
            ("effective_ceiling", .double(settings.effectiveCeiling)), ("batch_ceiling", .double(settings.batchCeiling)),
            ("breaker", Self.json(status.breaker)),
            ("capped_apps", .object(status.apps.sorted { $0.key < $1.key }.map { app, usage in
                (app, .object([("cap", .double(usage.cap)), ("requests", .int(usage.requests)), ("tokens", .int(usage.tokens))]))
            })),
            ("top_apps_minutes", .int(appMinutes)),
            ("top_apps", .array(topApps.map {
                .object([("app", .string($0.app)), ("requests", .int($0.requests)), ("tokens", .int($0.tokens))])
            })),
            ("reservations", .int(Int(status.reservations))),
            ("waiting", Self.json(line)),
        ])
    }

    /// `{"interactive": {"waiters": n, "oldest_wait_ms": ms|null}, "batch": {...}}`
    static func json(_ line: WaitingLineStatus) -> JSON {
        .object(Priority.allCases.map { priority in
            (priority.rawValue, .object([
                ("waiters", .int(line[priority].waiters)),
                ("oldest_wait_ms", line[priority].oldestWait.map { .int(Int($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000)) } ?? .null),
            ]))
        })
    }

    static func json(_ usage: LimitUsage) -> JSON {
        .object([
            ("used", .int(usage.used)), ("limit", .optional(usage.limit)), ("effective_limit", .optional(usage.effectiveLimit)),
            ("batch_limit", .optional(usage.batchLimit)), ("fraction", .optional(usage.fraction.map { ($0 * 10_000).rounded() / 10_000 })),
            ("window_ms", .int(Int(usage.windowMilliseconds))),
        ])
    }

    static func json(_ breaker: BreakerStatus) -> JSON {
        .object([
            ("state", .string(breaker.state.rawValue)),
            ("until_ms", breaker.untilMilliseconds > 0 ? .int(Int(breaker.untilMilliseconds)) : .null),
            ("openings", .int(breaker.openings)), ("consecutive_failures", .int(breaker.consecutiveFailures)),
            ("probe_successes", .int(breaker.probeSuccesses)), ("calls", .int(breaker.calls)),
            ("failures", .int(breaker.failures)), ("active_probes", .int(breaker.activeProbes)),
            ("failing_instances", .int(breaker.failingInstances)),
        ])
    }

    // MARK: Text

    /// The status block: a header line, one bar per limit, capped apps and top apps.
    func text(style: Style) -> String {
        var header = style.bold(TerminalText.escaped(budget.description)) + "   breaker " + Self.breakerText(status.breaker, now: status.nowMilliseconds, style: style)
        header += "   in flight \(Format.count(status.inFlight))" + (settings.inFlightLimit.map { "/\(Format.count($0))" } ?? "")
        if settings.effectiveCeiling < 1 {
            header += "   " + style.yellow("effective ceiling \(Format.percent(settings.effectiveCeiling))")
        }
        var rows: [[String]] = [["LIMIT", "USE", "", "USED", "LIMIT", "WINDOW"]]
        for usage in limits {
            let limitText: String
            if let limit = usage.limit, let effective = usage.effectiveLimit {
                limitText = effective == limit ? Format.count(limit) : "\(Format.count(effective)) of \(Format.count(limit))"
            } else {
                limitText = "none"
            }
            let fraction = usage.fraction
            rows.append([
                usage.label, fraction.map { style.bar($0) } ?? style.dim(String(repeating: "·", count: 20)),
                fraction.map { style.byLoad(Format.percent($0), $0) } ?? "-", Format.count(usage.used), limitText,
                Format.duration(milliseconds: usage.windowMilliseconds),
            ])
        }
        var lines = [header, Table.render(rows, rightAligned: [2, 3, 4], style: style, indent: "  ")]
        for (app, usage) in status.apps.sorted(by: { $0.key < $1.key }) {
            lines.append("  app cap \(TerminalText.escaped(app)) \(Format.percent(usage.cap)): \(Format.count(usage.requests)) requests, \(Format.count(usage.tokens)) tokens in the window")
        }
        lines.append("  waiting: " + Priority.allCases.map { priority in
            let waiting = line[priority]
            return "\(priority.rawValue) \(Format.count(waiting.waiters))"
                + (waiting.oldestWait.map { " (oldest \(Format.duration(milliseconds: $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000)))" } ?? "")
        }.joined(separator: ", "))
        let apps = topApps.map { "\(TerminalText.escaped($0.app)) \(Format.count($0.requests)) req \(Format.count($0.tokens)) tok" }
        lines.append("  top apps (settled, last \(appMinutes)m): " + (apps.isEmpty ? "none" : apps.joined(separator: ", ")))
        return lines.joined(separator: "\n")
    }

    /// `closed`, or `open (half-open in 12s)` and similar, coloured by severity.
    static func breakerText(_ breaker: BreakerStatus, now: Int64, style: Style) -> String {
        let name = breaker.state.rawValue
        switch breaker.state {
        case .closed: return style.green(name)
        case .disabled: return style.yellow(name)
        case .halfOpen: return style.yellow(name)
        case .open, .forcedOpen:
            let until = breaker.untilMilliseconds > 0
                ? " (half-open in \(Format.duration(milliseconds: max(0, breaker.untilMilliseconds - now))))" : " (until closed)"
            return style.red(name + until)
        }
    }
}
