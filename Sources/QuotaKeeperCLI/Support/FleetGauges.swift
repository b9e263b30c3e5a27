import QuotaKeeper
import QuotaKeeperEMF

/// A fleet-level gauge `quotakeeper export` publishes per budget (docs/observability.md, "Fleet gauges").
struct FleetGauge: Sendable, Hashable {
    let name: String
    let help: String
    let unit: EMFUnit

    static func == (lhs: FleetGauge, rhs: FleetGauge) -> Bool { lhs.name == rhs.name }
    func hash(into hasher: inout Hasher) { hasher.combine(name) }

    static let requestsInWindow = FleetGauge(
        name: "quotakeeper_budget_requests_in_window",
        help: "Requests admitted in the budget's sliding window (RPM for a 60 s window).", unit: .count)
    static let tokensInWindow = FleetGauge(
        name: "quotakeeper_budget_tokens_in_window",
        help: "Tokens held or charged in the budget's sliding window (TPM for a 60 s window).", unit: .count)
    static let tokensInDayWindow = FleetGauge(
        name: "quotakeeper_budget_tokens_in_day_window",
        help: "Tokens held or charged in the budget's day window.", unit: .count)
    static let limit = FleetGauge(
        name: "quotakeeper_budget_limit",
        help: "The configured limit (rpm: requests per window, tpm: tokens per window, tpd: tokens per day window); absent if not set.",
        unit: .count)
    static let limitUseRatio = FleetGauge(
        name: "quotakeeper_budget_limit_use_ratio",
        help: "Use in the window as a fraction of the configured limit (1 = the whole quota); absent if the limit is not set.",
        unit: .none)
    static let effectiveCeiling = FleetGauge(
        name: "quotakeeper_budget_effective_ceiling",
        help: "Share of every limit the ledger admits (lowered after unexpected throttles; 1 = the full limit).", unit: .none)
    static let inFlight = FleetGauge(
        name: "quotakeeper_budget_in_flight", help: "Calls holding an in-flight lease now.", unit: .count)
    static let inFlightLimit = FleetGauge(
        name: "quotakeeper_budget_in_flight_limit", help: "The in-flight limit; absent if not set.", unit: .count)
    static let breakerOpen = FleetGauge(
        name: "quotakeeper_budget_breaker_open",
        help: "1 while the shared breaker refuses calls (open or forced_open), else 0.", unit: .none)
    static let breakerState = FleetGauge(
        name: "quotakeeper_budget_breaker_state",
        help: "1 for the breaker's current state, 0 for the others (state: closed, half_open, open, forced_open, disabled).",
        unit: .none)
    static let peakRequestsPerMinute = FleetGauge(
        name: "quotakeeper_budget_peak_requests_per_minute",
        help: "Settled requests in the busiest minute of the peaks span (export --peaks-since, default 1h).", unit: .count)
    static let peakTokensPerMinute = FleetGauge(
        name: "quotakeeper_budget_peak_tokens_per_minute",
        help: "Settled tokens in the busiest minute of the peaks span (export --peaks-since, default 1h).", unit: .count)

    static let waiters = FleetGauge(
        name: "quotakeeper_budget_waiters",
        help: "Callers holding a live ticket in the budget's waiting line (class: interactive, batch).", unit: .count)
    static let oldestWait = FleetGauge(
        name: "quotakeeper_budget_oldest_wait_seconds",
        help: "How long the oldest ticket of the class has waited (class: interactive, batch); 0 when none waits.",
        unit: .seconds)

    /// Every gauge, in the order they are written.
    static let all: [FleetGauge] = [
        requestsInWindow, tokensInWindow, tokensInDayWindow, limit, limitUseRatio, effectiveCeiling, inFlight,
        inFlightLimit, breakerOpen, breakerState, peakRequestsPerMinute, peakTokensPerMinute, waiters, oldestWait,
    ]
}

/// One value of a fleet gauge for one budget.
struct FleetSample: Sendable {
    var gauge: FleetGauge
    var budget: BudgetID
    /// Labels besides the budget: `limit` (`rpm`, `tpm`, `tpd`) or `state`.
    var labels: [(String, String)] = []
    var value: Double
}

/// The gauges of one budget as read at one Redis time.
struct BudgetGauges: Sendable {
    var budget: BudgetID
    /// Redis time of the read, ms since 1970.
    var nowMilliseconds: Int64
    var samples: [FleetSample]

    /// Reads every budget under the prefix (per budget `ledger_read`, `TIME` and one HGETALL per minute, pipelined,
    /// and 2 ZRANGE of its waiting line), skipping budgets deleted meanwhile.
    static func read(ledger: QuotaLedger, peakMinutes: Int) async throws -> [BudgetGauges] {
        var result: [BudgetGauges] = []
        for budget in try await ledger.listBudgets() {
            do {
                let status = try await ledger.status(of: budget)
                let history = try await ledger.history(of: budget, minutes: peakMinutes)
                let line = try await ledger.waitingLine(of: budget, now: status.nowMilliseconds)
                result.append(BudgetGauges(budget: budget, status: status, history: history, line: line))
            } catch let error as LedgerError where error.code == .unknownBudget {
                continue
            }
        }
        return result
    }

    init(budget: BudgetID, status: BudgetStatus, history: [HistoryMinute], line: WaitingLineStatus) {
        self.budget = budget
        nowMilliseconds = status.nowMilliseconds
        let settings = BudgetSettings(status)
        var samples: [FleetSample] = []
        func add(_ gauge: FleetGauge, _ value: Double, _ labels: [(String, String)] = []) {
            samples.append(FleetSample(gauge: gauge, budget: budget, labels: labels, value: value))
        }
        let used = [
            ("rpm", status.window.requests ?? 0, settings.requestsPerWindow),
            ("tpm", status.window.tokens, settings.tokensPerWindow),
            ("tpd", status.day.tokens, settings.tokensPerDay),
        ]
        add(.requestsInWindow, Double(used[0].1))
        add(.tokensInWindow, Double(used[1].1))
        add(.tokensInDayWindow, Double(used[2].1))
        for (name, _, limit) in used { if let limit { add(.limit, Double(limit), [("limit", name)]) } }
        for (name, value, limit) in used {
            if let limit, limit > 0 { add(.limitUseRatio, Double(value) / Double(limit), [("limit", name)]) }
        }
        add(.effectiveCeiling, settings.effectiveCeiling)
        add(.inFlight, Double(status.inFlight))
        if let limit = settings.inFlightLimit { add(.inFlightLimit, Double(limit)) }
        let state = status.breaker.state
        add(.breakerOpen, state == .open || state == .forcedOpen ? 1 : 0)
        for candidate in BreakerState.allCases {
            add(.breakerState, candidate == state ? 1 : 0, [("state", candidate.rawValue)])
        }
        add(.peakRequestsPerMinute, Double(history.map(\.requests).max() ?? 0))
        add(.peakTokensPerMinute, Double(history.map(\.tokens).max() ?? 0))
        for priority in Priority.allCases {
            add(.waiters, Double(line[priority].waiters), [("class", priority.rawValue)])
            let oldest = line[priority].oldestWait?.components
            add(.oldestWait, oldest.map { Double($0.seconds) + Double($0.attoseconds) / 1e18 } ?? 0, [("class", priority.rawValue)])
        }
        self.samples = samples
    }
}

/// The Prometheus text exposition format 0.0.4 of the fleet gauges.
enum PrometheusExposition {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// One exposition: for each gauge with values, `# HELP` and `# TYPE` then its samples, labelled `budget`,
    /// `model`, `region` (and `limit` or `state`).
    static func render(_ budgets: [BudgetGauges]) -> String {
        let samples = budgets.flatMap(\.samples)
        var text = ""
        for gauge in FleetGauge.all {
            let values = samples.filter { $0.gauge == gauge }
            guard !values.isEmpty else { continue }
            text += "# HELP \(gauge.name) \(escapedHelp(gauge.help))\n# TYPE \(gauge.name) gauge\n"
            for sample in values {
                let labels = [("budget", sample.budget.description), ("model", sample.budget.model), ("region", sample.budget.region)]
                    + sample.labels
                text += gauge.name + "{" + labels.map { "\($0.0)=\"\(escapedLabelValue($0.1))\"" }.joined(separator: ",") + "} "
                text += number(sample.value) + "\n"
            }
        }
        return text
    }

    /// A label value: control characters shown as `\x1b` (it may be printed on a terminal), then backslash,
    /// double quote and line feed escaped.
    static func escapedLabelValue(_ value: String) -> String {
        TerminalText.escaped(value).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A HELP docstring: backslash and line feed escaped.
    static func escapedHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A sample value: whole numbers without a fraction, others in Swift's shortest round-trip form.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

extension BudgetGauges {
    /// The EMF documents of this budget's gauges (one per dimension set: the budget, then per limit and per
    /// breaker state), stamped with the Redis time of the read.
    func emfDocuments(_ encoder: EMFDocumentEncoder) -> [String] {
        let metrics = samples.map { sample in
            EMFMetricValue(
                name: sample.gauge.name, dimensions: [("budget", budget.description)] + sample.labels, unit: sample.gauge.unit,
                values: [sample.value])
        }
        return encoder.documents(for: metrics, timestampMilliseconds: nowMilliseconds)
    }

    /// The exporter's EMF configuration: only each gauge's full dimension set (a rollup over budgets would add
    /// up gauges of different budgets).
    static func emfConfiguration(namespace: String) -> EMFConfiguration {
        var configuration = EMFConfiguration()
        configuration.namespace = namespace
        configuration.dimensions.rollups = []
        configuration.dimensions.derived = []
        return configuration
    }
}
