import QuotaKeeper

/// The mapping between a budget's stored settings (`ledger_configure` names, see docs/ledger.md), the CLI's
/// JSON fields and `BudgetConfiguration`.
struct BudgetSettings: Sendable {
    /// Stored settings by `ledger_configure` name (0 = an optional setting that is not set).
    let values: [String: Double]
    /// Capped apps and their share of the window limits.
    let appCaps: [String: Double]
    /// The waiting line's app weights.
    let lineWeights: [String: Double]

    init(_ status: BudgetStatus) {
        values = status.settings
        appCaps = status.apps.mapValues(\.cap)
        lineWeights = status.lineWeights
    }

    func number(_ name: String) -> Double { values[name] ?? 0 }
    func integer(_ name: String) -> Int { Int(number(name)) }
    /// nil for an optional setting stored as 0 (not set).
    func optional(_ name: String) -> Int? { number(name) > 0 ? integer(name) : nil }

    var requestsPerWindow: Int? { optional("rpm") }
    var tokensPerWindow: Int? { optional("tpm") }
    var tokensPerDay: Int? { optional("tpd") }
    var windowMilliseconds: Int64 { Int64(number("win")) }
    var dayWindowMilliseconds: Int64 { Int64(number("dwin")) }
    var batchCeiling: Double { number("batch") }
    var effectiveCeiling: Double { number("ceil") }
    var inFlightLimit: Int? { optional("infl") }

    /// The configuration as stored, so `budget set` can change some fields and write the rest back unchanged.
    func configuration(of budget: BudgetID) -> BudgetConfiguration {
        var configuration = BudgetConfiguration(
            id: budget,
            limits: .init(requestsPerWindow: requestsPerWindow, tokensPerWindow: tokensPerWindow, tokensPerDay: tokensPerDay))
        configuration.window = .milliseconds(Int64(number("win")))
        configuration.bucketCount = integer("n")
        configuration.dayWindow = .milliseconds(Int64(number("dwin")))
        configuration.dayBucketCount = integer("dn")
        configuration.batchCeiling = batchCeiling
        configuration.effectiveCeiling = effectiveCeiling
        configuration.appCaps = appCaps
        configuration.inFlight = inFlightLimit.map { .init(limit: $0, lease: .milliseconds(Int64(number("lease")))) }
        configuration.historyRetention = .milliseconds(Int64(number("hist")))
        configuration.historyApps = optional("hk") ?? configuration.historyApps
        configuration.hopMargin = .milliseconds(Int64(number("hop")))
        configuration.waitingLine = .init(
            capacity: integer("lcap"), batchPromotion: .milliseconds(Int64(number("lprom"))),
            ticketGrace: .milliseconds(Int64(number("lgrace"))), appWeights: lineWeights)
        var breaker = BreakerConfiguration()
        breaker.window = .milliseconds(Int64(number("b_win")))
        breaker.bucketCount = integer("b_n")
        breaker.failureRateThreshold = number("b_rate")
        breaker.minimumCalls = integer("b_min")
        breaker.consecutiveFailureThreshold = optional("b_consec")
        breaker.quorum = integer("b_quorum")
        breaker.openDuration = .milliseconds(Int64(number("b_open")))
        breaker.backoffMultiplier = number("b_mult")
        breaker.maximumOpenDuration = .milliseconds(Int64(number("b_max")))
        breaker.halfOpenProbes = integer("b_probes")
        breaker.successesToClose = integer("b_close")
        breaker.probeLease = .milliseconds(Int64(number("b_lease")))
        breaker.slowCallThreshold = optional("b_slow").map { .milliseconds(Int64($0)) }
        configuration.breaker = breaker
        return configuration
    }

    /// `budget show`'s `configuration` object.
    var json: JSON {
        .object([
            ("requests_per_window", .optional(requestsPerWindow)), ("tokens_per_window", .optional(tokensPerWindow)),
            ("tokens_per_day", .optional(tokensPerDay)), ("window_ms", .int(integer("win"))), ("buckets", .int(integer("n"))),
            ("day_window_ms", .int(integer("dwin"))), ("day_buckets", .int(integer("dn"))),
            ("batch_ceiling", .double(batchCeiling)), ("effective_ceiling", .double(effectiveCeiling)),
            ("in_flight_limit", .optional(inFlightLimit)), ("in_flight_lease_ms", .int(integer("lease"))),
            ("history_retention_ms", .int(integer("hist"))), ("history_apps_per_minute", .optional(optional("hk"))),
            ("app_caps", .object(appCaps.sorted { $0.key < $1.key }.map { ($0.key, .double($0.value)) })),
            ("waiting_line", .object([
                ("capacity", .int(integer("lcap"))), ("batch_promotion_ms", .int(integer("lprom"))),
                ("ticket_grace_ms", .int(integer("lgrace"))),
                ("app_weights", .object(lineWeights.sorted { $0.key < $1.key }.map { ($0.key, .double($0.value)) })),
            ])),
            ("breaker", .object([
                ("window_ms", .int(integer("b_win"))), ("buckets", .int(integer("b_n"))),
                ("failure_rate_threshold", .double(number("b_rate"))), ("minimum_calls", .int(integer("b_min"))),
                ("consecutive_failure_threshold", .optional(optional("b_consec"))), ("quorum", .int(integer("b_quorum"))),
                ("open_ms", .int(integer("b_open"))), ("backoff_multiplier", .double(number("b_mult"))),
                ("maximum_open_ms", .int(integer("b_max"))), ("half_open_probes", .int(integer("b_probes"))),
                ("successes_to_close", .int(integer("b_close"))), ("probe_lease_ms", .int(integer("b_lease"))),
                ("slow_call_ms", .optional(optional("b_slow"))),
            ])),
        ])
    }

    /// `budget show`'s table: one setting per row.
    func table(style: Style) -> String {
        func limit(_ value: Int?) -> String { value.map(Format.count) ?? "none" }
        func ms(_ name: String) -> String { Format.duration(milliseconds: Int64(number(name))) }
        var rows: [[String]] = [
            ["SETTING", "VALUE"],
            ["requests per window", limit(requestsPerWindow)],
            ["tokens per window", limit(tokensPerWindow)],
            ["tokens per day", limit(tokensPerDay)],
            ["window", "\(ms("win")) in \(integer("n")) buckets"],
            ["day window", "\(ms("dwin")) in \(integer("dn")) buckets"],
            ["batch ceiling", Format.percent(batchCeiling)],
            ["effective ceiling", Format.percent(effectiveCeiling)],
            ["in-flight limit", inFlightLimit.map { "\(Format.count($0)) (lease \(ms("lease")))" } ?? "none"],
            ["history retention", ms("hist")],
            ["history rows", optional("hk").map { "\(Format.count($0)) apps a minute + other" } ?? "-"],
        ]
        for (app, cap) in appCaps.sorted(by: { $0.key < $1.key }) { rows.append(["app cap \(TerminalText.escaped(app))", Format.percent(cap)]) }
        rows.append(["waiting line", "\(Format.count(integer("lcap"))) tickets, batch promoted after \(ms("lprom")), grace \(ms("lgrace"))"])
        for (app, weight) in lineWeights.sorted(by: { $0.key < $1.key }) {
            rows.append(["line weight \(TerminalText.escaped(app))", Format.decimal(weight, digits: 2)])
        }
        rows += [
            ["breaker window", "\(ms("b_win")) in \(integer("b_n")) buckets"],
            ["breaker opens at", "\(Format.percent(number("b_rate"))) failures of at least \(integer("b_min")) calls"
                + (optional("b_consec").map { ", or \($0) consecutive failures" } ?? "")],
            ["breaker quorum", "\(integer("b_quorum")) instance(s)"],
            ["breaker open", "\(ms("b_open")) x\(Format.decimal(number("b_mult"), digits: 2)) up to \(ms("b_max"))"],
            ["breaker half-open", "\(integer("b_probes")) probes (lease \(ms("b_lease"))), \(integer("b_close")) successes close"],
            ["breaker slow call", optional("b_slow").map { Format.duration(milliseconds: Int64($0)) } ?? "not counted"],
        ]
        return Table.render(rows, style: style)
    }
}
