import QuotaKeeperRedis
import TimeLimit

/// The typed wire contract of the admission and settlement scripts (`lua/ledger_reserve.lua`,
/// `lua/ledger_reserve_many.lua`, `lua/ledger_settle.lua`, `lua/ledger_settle_many.lua`): their KEYS, arguments
/// and replies, encoded and decoded here and nowhere else.
enum LedgerWire {
    /// `count` little-endian doubles packed by the scripts (`struct.pack('<d...')`), or nil if `bytes` is not
    /// exactly that long.
    static func doubles(_ bytes: [UInt8], count: Int) -> [Double]? {
        guard bytes.count == 8 * count else { return nil }
        return (0..<count).map { index in
            Double(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[index * 8 + $1]) << (8 * UInt64($1)) })
        }
    }

    /// `<prefix>{<budget>}` followed by a suffix: every key of a budget shares its hash tag (one cluster slot).
    struct BudgetKeys {
        let base: String

        init(prefix: String, budget: BudgetID) { base = "\(prefix){\(budget)}" }

        var ledger: String { base + ":ledger" }
        func record(_ reservationID: String) -> String { base + ":res:" + reservationID }
        var inFlight: String { base + ":inflight" }
        var probes: String { base + ":probes" }
        var failers: String { base + ":failers" }
        func replayed(_ replayID: String) -> String { base + ":replayed:" + replayID }

        /// KEYS of `ledger_configure`.
        var configure: [String] { [ledger, inFlight] }
        /// KEYS of `ledger_read` and `ledger_delete`.
        var readOrDelete: [String] { [ledger, inFlight, probes, failers] }
        /// KEYS of `breaker_admin`.
        var breakerAdmin: [String] { [ledger, probes, failers] }
        /// One minute's history (minute = Redis ms / 60000; QuotaLedger+History.swift).
        func history(minute: Int64) -> String { base + ":hist:" + String(minute) }
        /// The waiting line: tickets by tag (zset), ticket expiries (zset), ticket index and app tags (hash).
        var line: String { base + ":line" }
        var lineExpiry: String { base + ":line:exp" }
        var lineTickets: String { base + ":line:tickets" }
        /// KEYS of `ledger_reserve_leave`.
        var leaveLine: [String] { [ledger, line, lineExpiry, lineTickets] }
        /// The fleet-wide retry budget of the target (`lua/retry_budget.lua`).
        var retryBudget: String { base + ":retry" }
    }

    /// What a caller that waits adds to `ledger_reserve`: how long it will still wait (the line's settings
    /// are the budget's, in Redis).
    struct Waiting {
        var maxWait: Duration
    }

    /// `ledger_reserve`'s KEYS and ARGV.
    struct ReserveArguments {
        var reservationID: String
        var app: String
        var priority: Priority
        var requests: Int
        var tokens: Int
        var lease: Duration?
        /// Set for a caller that waits: it takes or keeps a ticket (named by `reservationID`) in the line.
        var waiting: Waiting? = nil

        func keys(_ keys: BudgetKeys) -> [String] {
            [keys.ledger, keys.record(reservationID), keys.inFlight, keys.probes]
                + (waiting == nil ? [] : [keys.line, keys.lineExpiry, keys.lineTickets])
        }

        /// The lease goes only when given (or waiting follows): the script's everyday path is cheaper with one
        /// argument less; so do the waiting arguments.
        var arguments: [String] {
            let base = [app, priority.rawValue, String(requests), String(tokens)]
            guard let waiting else { return base + (lease.map { [String($0.millisecondsRoundedUp)] } ?? []) }
            return base + [String(lease?.millisecondsRoundedUp ?? 0), String(max(waiting.maxWait.millisecondsRoundedDown, 1))]
        }
    }

    /// `ledger_reserve_many`'s KEYS and ARGV: admissions of one budget, decided in order on the everyday path (a
    /// call's waiting arguments are not sent: they matter only when it is sent alone).
    struct ReserveManyArguments {
        static let maximumCalls = 64   // MAX_CALLS in lua/ledger_reserve_many.lua
        var calls: [ReserveArguments]

        func keys(_ keys: BudgetKeys) -> [String] { [keys.ledger] + calls.map { keys.record($0.reservationID) } }

        var arguments: [String] {
            calls.flatMap { call in
                [call.app, call.priority.rawValue, String(call.requests), String(call.tokens), String(call.lease?.millisecondsRoundedUp ?? 0)]
            }
        }
    }

    /// The answer of a batched script (`ledger_reserve_many`, `ledger_settle_many`): per call, the single script's
    /// own reply (decoded by ``ReserveReply`` or ``SettleReply``), or nil for a call to send through the single script
    /// (one that needs more than the everyday path, and every call after it). Nil as a whole when the budget has no
    /// configuration in Redis (send every call through the single script, which seeds it).
    static func manyReplies(_ reply: RedisReply, calls: Int, of script: RedisScript) throws(LedgerError) -> [RedisReply?]? {
        if reply.tag == "no_budget" { return nil }
        guard let replies = reply.array, replies.count == calls else { throw QuotaLedger.unexpected(reply, script) }
        return replies.map { $0.tag == "fallback" ? nil : $0 }
    }

    /// `ledger_reserve`'s answer.
    enum ReserveReply {
        /// Admitted (or, `repeated`, admitted before under the same reservation id: the first admission); a
        /// booking (`startsIn` > 0) is admitted for a later time: the caller may call Bedrock only after `startsIn`.
        case admitted(sequence: Int64, epoch: Int64, isProbe: Bool, admittedAtMilliseconds: Int64, repeated: Bool, startsIn: Duration)
        case denied(Denial)
        /// Not yet: the caller holds a ticket in the line and is due in `denial.retryAfter` (come back then).
        case queued(WaitingTicket, Denial)

        init(_ reply: RedisReply, budget: BudgetID) throws(LedgerError) {
            let fields = reply.array ?? []
            switch reply.tag {
            case "ok":
                let numbers = reply.integers
                // (the 9th, the booking's start in ms, only from the full admission and a repeated one)
                guard numbers.count == 8 || (numbers.count == 9 && numbers[8] >= 0) else {
                    throw QuotaLedger.unexpected(reply, LedgerScripts.reserve)
                }
                self = .admitted(
                    sequence: numbers[1], epoch: numbers[2], isProbe: numbers[5] == 1, admittedAtMilliseconds: numbers[6],
                    repeated: numbers[7] == 1, startsIn: .milliseconds(numbers.count == 9 ? numbers[8] : 0))
            case "denied":
                guard fields.count == 6, let reason = fields[1].string.flatMap(Denial.Reason.init(rawValue:)),
                      let usage = fields[2].integer, let limit = fields[3].integer, let retry = fields[4].integer
                else { throw QuotaLedger.unexpected(reply, LedgerScripts.reserve) }
                self = .denied(Denial(
                    budget: budget, reason: reason, dimension: fields[5].string ?? "", usage: Int(usage), limit: Int(limit),
                    retryAfter: retry < 0 ? nil : .milliseconds(retry)))
            case "queued":
                guard fields.count == 9, let due = fields[1].integer, let position = fields[2].integer,
                      let tag = fields[3].string.flatMap(Double.init), let reason = fields[4].string.flatMap(Denial.Reason.init(rawValue:)),
                      let usage = fields[5].integer, let limit = fields[6].integer, let next = fields[8].integer
                else { throw QuotaLedger.unexpected(reply, LedgerScripts.reserve) }
                self = .queued(
                    WaitingTicket(tag: tag, position: Int(position), nextCallerTurn: next < 0 ? nil : .milliseconds(next)),
                    Denial(
                        budget: budget, reason: reason, dimension: fields[7].string ?? "", usage: Int(usage), limit: Int(limit),
                        retryAfter: .milliseconds(max(due, 0))))
            default:
                throw QuotaLedger.unexpected(reply, LedgerScripts.reserve)
            }
        }
    }

    /// Settle charges what Bedrock charged; release gives everything back.
    enum SettleMode: String, Sendable {
        case settle
        case release
    }

    /// `ledger_settle`'s KEYS and ARGV. The reservation itself (app, buckets, held tokens, probe, epoch) comes
    /// from its record in Redis, never from the caller. The charge is the caller's (`BurndownTable.charge`, the
    /// one charge formula); `usage` goes along for the history's input and output columns.
    struct SettleArguments {
        var reservationID: String
        var mode: SettleMode
        /// Tokens Bedrock charged (0 on release).
        var chargedTokens: Int
        var usage: TokenUsage
        var outcome: CallOutcome
        var latency: Duration
        var instance: String

        /// A settle charges `burndown.charge(usage, model:)`; a release charges nothing and reports no usage.
        init(
            reservationID: String, mode: SettleMode, usage: TokenUsage, burndown: BurndownTable, model: String,
            outcome: CallOutcome, latency: Duration, instance: String
        ) {
            self.reservationID = reservationID
            self.mode = mode
            self.usage = mode == .settle ? usage : TokenUsage(inputTokens: 0, outputTokens: 0)
            self.chargedTokens = mode == .settle ? burndown.charge(usage, model: model) : 0
            self.outcome = outcome
            self.latency = latency
            self.instance = instance
        }

        /// The KEYS but the last, the history minute's (``BudgetKeys/history(minute:)``).
        func keys(_ keys: BudgetKeys) -> [String] {
            [keys.ledger, keys.record(reservationID), keys.inFlight, keys.probes, keys.failers]
        }

        var arguments: [String] { callArguments + [instance] }

        /// The arguments `ledger_settle_many` takes per call: all but the instance (read only for a failed call,
        /// which a batch sends alone).
        var callArguments: [String] {
            [
                mode.rawValue, String(chargedTokens), String(usage.inputTokens + usage.cacheWriteInputTokens),
                String(usage.outputTokens), outcome.rawValue, String(latency.millisecondsRoundedUp),
            ]
        }
    }

    /// `ledger_settle_many`'s KEYS and ARGV: settlements and releases of one budget, decided in order on the
    /// everyday path, all recorded in one history minute.
    struct SettleManyArguments {
        static let maximumCalls = 64   // MAX_CALLS in lua/ledger_settle_many.lua
        var calls: [SettleArguments]
        /// The minute (Redis ms / 60000) of the batch's history rows.
        var historyMinute: Int64

        func keys(_ keys: BudgetKeys) -> [String] {
            [keys.ledger] + calls.map { keys.record($0.reservationID) } + [keys.history(minute: historyMinute)]
        }

        var arguments: [String] { calls.flatMap(\.callArguments) }
    }


    /// `ledger_settle`'s answer.
    enum SettleReply {
        /// This call settled or released the reservation.
        case done(Settlement)
        /// An earlier call did (`mode`); this is what it did. Nothing changed now.
        case alreadyDone(SettleMode, Settlement)
        /// No record: never admitted, expired, or lost with Redis's state. Nothing changed.
        case unknownReservation

        /// `reply` to `arguments`. The everyday path answers with the integer delta alone (done as asked, the
        /// charge as sent, the breaker closed); every other answer is an array.
        init(_ reply: RedisReply, to arguments: SettleArguments) throws(LedgerError) {
            if case .integer(let delta) = reply {
                self = .done(Settlement(chargedTokens: arguments.chargedTokens, returnedTokens: Int(-delta), breakerState: .closed))
                return
            }
            let fields = reply.array ?? []
            func settlement(_ offset: Int) throws(LedgerError) -> Settlement {
                guard fields.count == offset + 3, let charged = fields[offset].integer, let delta = fields[offset + 1].integer,
                      let state = fields[offset + 2].string.flatMap(BreakerState.init(rawValue:))
                else { throw QuotaLedger.unexpected(reply, LedgerScripts.settle) }
                return Settlement(chargedTokens: Int(charged), returnedTokens: Int(-delta), breakerState: state)
            }
            switch reply.tag {
            case "settled", "released":
                self = .done(try settlement(1))
            case "already_settled":
                guard fields.count > 1, let mode = fields[1].string.flatMap({ $0 == "settled" ? SettleMode.settle : $0 == "released" ? .release : nil })
                else { throw QuotaLedger.unexpected(reply, LedgerScripts.settle) }
                self = .alreadyDone(mode, try settlement(2))
            case "unknown_reservation":
                self = .unknownReservation
            default:
                throw QuotaLedger.unexpected(reply, LedgerScripts.settle)
            }
        }
    }

    /// `retry_budget`'s KEYS and ARGV: the first attempts not yet reported and the budget's settings.
    struct RetryBudgetArguments {
        var unreportedCalls: Int
        var settings: CallPathConfiguration.RetryBudget

        func keys(_ keys: BudgetKeys) -> [String] { [keys.retryBudget] }

        var arguments: [String] {
            [
                String(unreportedCalls), String(settings.window.millisecondsRoundedUp),
                String(settings.bucket.millisecondsRoundedUp), String(settings.ratio), String(settings.minimumPerWindow),
            ]
        }
    }

    /// `retry_budget`'s answer: `{1 | 0, retries, allowed}` (`invalid` is refused by `QuotaLedger.run`).
    struct RetryBudgetReply {
        /// The retry may go ahead (and was counted).
        var permitted: Bool

        init(_ reply: RedisReply) throws(LedgerError) {
            let numbers = reply.array?.compactMap(\.integer) ?? []
            guard numbers.count == 3, numbers[0] == 0 || numbers[0] == 1 else {
                throw QuotaLedger.unexpected(reply, LedgerScripts.retryBudget)
            }
            permitted = numbers[0] == 1
        }
    }
}
