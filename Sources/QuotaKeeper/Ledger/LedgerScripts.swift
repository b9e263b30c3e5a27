import QuotaKeeperRedis
import TimeLimit

/// The ledger's scripts: `lua/ledger_lib.lua` followed by one operation script from `lua/` (all but the admission
/// with `lua/ledger_lib_history.lua` and `lua/ledger_lib_extra.lua` between), embedded at build time, so the
/// binaries run exactly what `lua/` holds. Settle runs its everyday path before `ledger_lib_extra.lua`, whose
/// definitions only the rest of it pays for.
enum LedgerScripts {
    static let reserve = RedisScript(
        name: "ledger_reserve",
        source: [EmbeddedLuaScripts.ledgerLib, EmbeddedLuaScripts.ledgerLibAdmission, EmbeddedLuaScripts.ledgerReserve].joined(separator: "\n"))
    /// Up to ``LedgerWire/ReserveManyArguments/maximumCalls`` admissions of one budget at once, of callers holding
    /// no ticket in its waiting line (``QuotaLedger/reserveCoalescer``).
    static let reserveMany = RedisScript(
        name: "ledger_reserve_many",
        source: [EmbeddedLuaScripts.ledgerLib, EmbeddedLuaScripts.ledgerLibAdmission, EmbeddedLuaScripts.ledgerReserveMany]
            .joined(separator: "\n"))
    static let leaveLine = RedisScript(
        name: "ledger_reserve_leave", source: EmbeddedLuaScripts.ledgerLib + "\n" + EmbeddedLuaScripts.ledgerReserveLeave)
    static let settle = RedisScript(
        name: "ledger_settle",
        source: [
            EmbeddedLuaScripts.ledgerLib, EmbeddedLuaScripts.ledgerLibHistory, EmbeddedLuaScripts.ledgerLibSettlement,
            EmbeddedLuaScripts.ledgerSettle, EmbeddedLuaScripts.ledgerLibExtra, EmbeddedLuaScripts.ledgerSettleFull,
        ].joined(separator: "\n"))
    /// Up to ``LedgerWire/SettleManyArguments/maximumCalls`` settlements of one budget at once (``QuotaLedger/settleCoalescer``).
    static let settleMany = RedisScript(
        name: "ledger_settle_many",
        source: [
            EmbeddedLuaScripts.ledgerLib, EmbeddedLuaScripts.ledgerLibHistory, EmbeddedLuaScripts.ledgerLibSettlement,
            EmbeddedLuaScripts.ledgerSettleMany,
        ].joined(separator: "\n"))
    static let configure = script("ledger_configure", EmbeddedLuaScripts.ledgerConfigure)
    static let read = script("ledger_read", EmbeddedLuaScripts.ledgerRead)
    static let delete = script("ledger_delete", EmbeddedLuaScripts.ledgerDelete)
    static let breakerAdmin = script("breaker_admin", EmbeddedLuaScripts.breakerAdmin)
    static let replay = script("ledger_replay", EmbeddedLuaScripts.ledgerReplay)
    /// The fleet-wide retry budget (stands alone: it needs none of the ledger's library).
    static let retryBudget = RedisScript(name: "retry_budget", source: EmbeddedLuaScripts.retryBudget)

    static let all = [reserve, reserveMany, leaveLine, settle, settleMany, configure, read, delete, breakerAdmin, replay, retryBudget]

    private static func script(_ name: String, _ body: String) -> RedisScript {
        RedisScript(
            name: name,
            source: [EmbeddedLuaScripts.ledgerLib, EmbeddedLuaScripts.ledgerLibHistory, EmbeddedLuaScripts.ledgerLibExtra, body]
                .joined(separator: "\n"))
    }
}

extension BudgetConfiguration {
    /// The `ledger_configure` settings (name, value pairs; an empty value = not set).
    var scriptSettings: [String] {
        func optional(_ value: Int?) -> String { value.map(String.init) ?? "" }
        var settings = [
            "win", String(window.millisecondsRoundedUp), "n", String(bucketCount),
            "dwin", String(dayWindow.millisecondsRoundedUp), "dn", String(dayBucketCount),
        ] + limits.scriptSettings + [
            "batch", String(batchCeiling), "ceil", String(effectiveCeiling),
            "infl", optional(inFlight?.limit),
            "lease", String((inFlight?.lease ?? .seconds(120)).millisecondsRoundedUp),
            "hist", String(historyRetention.millisecondsRoundedUp), "hk", String(historyApps),
            "hop", String(hopMargin.millisecondsRoundedUp),
        ]
        settings += breaker.scriptSettings
        for (app, cap) in appCaps.sorted(by: { $0.key < $1.key }) { settings += ["cap:\(app)", String(cap)] }
        settings += [
            "lcap", String(waitingLine.capacity), "lprom", String(waitingLine.batchPromotion.millisecondsRoundedUp),
            "lgrace", String(waitingLine.ticketGrace.millisecondsRoundedUp),
        ]
        for (app, weight) in waitingLine.appWeights.sorted(by: { $0.key < $1.key }) { settings += ["w:\(app)", String(weight)] }
        return settings
    }

    /// Apps with a cap per budget (`MAX_CAPPED_APPS` in lua/ledger_lib_extra.lua): each has a ring of its own.
    static let maximumCappedApps = 16

    /// Checks what the scripts would refuse, naming the setting.
    func validate() throws(LedgerError) {
        func invalid(_ what: String) -> LedgerError {
            LedgerError(code: .invalidConfiguration, message: "budget \(id): \(what)")
        }
        try id.validateName()
        let limitValues = [
            ("requestsPerWindow", limits.requestsPerWindow), ("tokensPerWindow", limits.tokensPerWindow),
            ("tokensPerDay", limits.tokensPerDay),
        ]
        for case let (name, value?) in limitValues where value < 1 || value > 1_000_000_000_000_000 {
            throw invalid("\(name) must be from 1 to 10^15, not \(value)")
        }
        try Self.validate(window: window, buckets: bucketCount, name: "window", invalid)
        try Self.validate(window: dayWindow, buckets: dayBucketCount, name: "dayWindow", invalid)
        try Self.validate(window: breaker.window, buckets: breaker.bucketCount, name: "breaker.window", invalid)
        if !(0.01...1).contains(batchCeiling) { throw invalid("batchCeiling must be from 0.01 to 1") }
        if !(0.01...1).contains(effectiveCeiling) { throw invalid("effectiveCeiling must be from 0.01 to 1") }
        if let inFlight, !(1...1_000_000).contains(inFlight.limit) || inFlight.lease <= .zero {
            throw invalid("inFlight.limit must be from 1 to 10^6 with a positive lease")
        }
        if historyRetention < .seconds(60) || historyRetention > .seconds(604_800) {
            throw invalid("historyRetention must be from one minute to 7 days")
        }
        if !(1...1000).contains(historyApps) { throw invalid("historyApps must be from 1 to 1000, not \(historyApps)") }
        if !(.zero ... .seconds(60)).contains(hopMargin) { throw invalid("hopMargin must be from 0 to 60 s, not \(hopMargin)") }
        if hopMargin > window || hopMargin > dayWindow {
            throw invalid("hopMargin (\(hopMargin)) must be at most the window and the day window")
        }
        if appCaps.count > Self.maximumCappedApps {
            throw invalid("at most \(Self.maximumCappedApps) apps may have a cap, not \(appCaps.count)")
        }
        for (app, cap) in appCaps {
            guard QuotaLedger.isValidName(app) else { throw invalid("app cap name \"\(app)\" is not a valid app name") }
            if !(0.001...1).contains(cap) { throw invalid("cap of app \(app) must be from 0.001 to 1") }
        }
        try breaker.validate(invalid)
        if !(1...1000).contains(waitingLine.capacity) { throw invalid("waitingLine.capacity must be from 1 to 1000") }
        if !(.zero ... .seconds(31_622_400)).contains(waitingLine.batchPromotion) {
            throw invalid("waitingLine.batchPromotion must be from 0 to one year")
        }
        if waitingLine.ticketGrace < .milliseconds(1) || waitingLine.ticketGrace > .seconds(31_622_400) {
            throw invalid("waitingLine.ticketGrace must be from 1 ms to one year")
        }
        if waitingLine.appWeights.count > 1000 { throw invalid("waitingLine.appWeights may name at most 1000 apps") }
        for (app, weight) in waitingLine.appWeights {
            guard QuotaLedger.isValidName(app) else { throw invalid("waiting line weight name \"\(app)\" is not a valid app name") }
            if !weight.isFinite || !(0.01...100).contains(weight) { throw invalid("waiting line weight of app \(app) must be from 0.01 to 100") }
        }
    }

    private static func validate(
        window: Duration, buckets: Int, name: String, _ invalid: (String) -> LedgerError
    ) throws(LedgerError) {
        let milliseconds = window.millisecondsRoundedUp
        guard (1...600).contains(buckets) else { throw invalid("\(name) bucket count must be from 1 to 600") }
        guard milliseconds >= buckets, milliseconds % Int64(buckets) == 0 else {
            throw invalid("\(name) (\(milliseconds) ms) must be a whole multiple of its \(buckets) buckets, each at least 1 ms")
        }
    }
}

extension BudgetConfiguration.Limits {
    /// `rpm`, `tpm` and `tpd` settings (empty = no limit).
    var scriptSettings: [String] {
        func optional(_ value: Int?) -> String { value.map(String.init) ?? "" }
        return ["rpm", optional(requestsPerWindow), "tpm", optional(tokensPerWindow), "tpd", optional(tokensPerDay)]
    }
}

extension BreakerConfiguration {
    var scriptSettings: [String] {
        [
            "b_rate", String(failureRateThreshold), "b_min", String(minimumCalls),
            "b_consec", consecutiveFailureThreshold.map(String.init) ?? "", "b_quorum", String(quorum),
            "b_open", String(openDuration.millisecondsRoundedUp), "b_mult", String(backoffMultiplier),
            "b_max", String(maximumOpenDuration.millisecondsRoundedUp), "b_probes", String(halfOpenProbes),
            "b_close", String(successesToClose), "b_lease", String(probeLease.millisecondsRoundedUp),
            "b_slow", slowCallThreshold.map { String($0.millisecondsRoundedUp) } ?? "",
            "b_win", String(window.millisecondsRoundedUp), "b_n", String(bucketCount),
        ]
    }

    func validate(_ invalid: (String) -> LedgerError) throws(LedgerError) {
        if !(0.01...1).contains(failureRateThreshold) { throw invalid("breaker.failureRateThreshold must be from 0.01 to 1") }
        if minimumCalls < 1 { throw invalid("breaker.minimumCalls must be at least 1") }
        if let threshold = consecutiveFailureThreshold, threshold < 1 {
            throw invalid("breaker.consecutiveFailureThreshold must be at least 1")
        }
        if !(1...1000).contains(quorum) { throw invalid("breaker.quorum must be from 1 to 1000") }
        if openDuration < .milliseconds(1) || maximumOpenDuration < openDuration {
            throw invalid("breaker.openDuration must be positive and at most maximumOpenDuration")
        }
        if !(1...100).contains(backoffMultiplier) { throw invalid("breaker.backoffMultiplier must be from 1 to 100") }
        if !(1...1000).contains(halfOpenProbes) || !(1...1000).contains(successesToClose) {
            throw invalid("breaker.halfOpenProbes and successesToClose must be from 1 to 1000")
        }
        if probeLease < .milliseconds(1) { throw invalid("breaker.probeLease must be positive") }
        if let slow = slowCallThreshold, slow < .milliseconds(1) { throw invalid("breaker.slowCallThreshold must be positive") }
    }
}

extension BudgetID {
    /// Throws unless the name can be addressed in Redis: model and region 1-200 characters without braces or
    /// whitespace. Budgets already in Redis are read with this rule (a name planted with control characters
    /// can still be listed, read and reset; the CLI prints it escaped).
    func validate() throws(LedgerError) {
        for (name, value) in [("model", model), ("region", region)] {
            if value.isEmpty || value.count > 200 || value.contains(where: { "{}".contains($0) || $0.isWhitespace }) {
                throw LedgerError(
                    code: .invalidArgument,
                    message: "budget \(name) \"\(value)\" must be 1-200 characters without braces or spaces")
            }
        }
    }

    /// Throws unless a budget may be created under this name: ``validate()``'s rule, and no control or format
    /// characters (escape sequences, bidirectional overrides, zero-width characters), which would let a name
    /// rewrite a terminal that prints it. Checked for every configuration and by the CLI for every name given.
    public func validateName() throws(LedgerError) {
        try validate()
        for (name, value) in [("model", model), ("region", region)] where value.unicodeScalars.contains(where: Self.isControlOrFormat) {
            throw LedgerError(
                code: .invalidArgument,
                message: "budget \(name) must not contain control or format characters (escape sequences, bidirectional overrides)")
        }
    }

    /// A control (`Cc`: C0, DEL, C1) or format (`Cf`) character, or a line or paragraph separator.
    static func isControlOrFormat(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}
