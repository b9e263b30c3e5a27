import Foundation
import Logging
import Metrics
import QuotaKeeperRedis
import TimeLimit

/// The fleet-wide quota ledger: every instance reserves budget here before it calls Bedrock and settles what
/// Bedrock charged afterwards, so RPM, TPM and tokens-per-day limits hold across the whole fleet.
///
/// Each budget lives in Redis under `<keyPrefix>{<model>@<region>}:...` (one hash tag, one cluster slot) and
/// changes only through the scripts in `lua/`, with Redis `TIME` as the only clock. A budget's circuit
/// breaker lives in the same hash: admission and breaker check are one `EVALSHA`, settlement and outcome
/// report another.
public struct QuotaLedger: Sendable {
    /// The Redis the ledger lives in.
    public let redis: RedisClient
    /// The prefix of every key (several environments can share one Redis).
    public let keyPrefix: String
    /// Output burndown per model, applied at settlement.
    public let burndown: BurndownTable
    /// This process's id in breaker reports (for the quorum of distinct failing instances).
    public let instanceID: String
    /// The configurations this instance seeds (and re-seeds after Redis lost them).
    public let configurations: [BudgetID: BudgetConfiguration]
    let logger: Logger
    /// What this process last heard of each app's turn in a waiting line (``acquire``).
    let lineTurns = LineTurns()
    /// Sends the reservations of a budget that overlap in time (of callers holding no ticket) as one call.
    let reserveCoalescer = GroupCommit<LedgerWire.ReserveArguments>(
        maximumCalls: LedgerWire.ReserveManyArguments.maximumCalls,
        alone: { ledger, call, budget in try await ledger.reserveAlone(call, of: budget) },
        many: { ledger, calls, budget in try await ledger.reserveMany(calls, of: budget) })
    /// Sends the settlements and releases of a budget that overlap in time as one call.
    let settleCoalescer = GroupCommit<SettleCall>(
        maximumCalls: LedgerWire.SettleManyArguments.maximumCalls,
        alone: { ledger, call, budget in try await ledger.settleAlone(call, of: budget) },
        many: { ledger, calls, budget in try await ledger.settleMany(calls, of: budget) })

    /// Creates a ledger; nothing is sent to Redis until the first call (`seedBudgets()` seeds eagerly).
    /// - Parameters:
    ///   - redis: the client to use.
    ///   - keyPrefix: prefix of every key, without braces (default `quotakeeper:`).
    ///   - budgets: the budgets this instance knows; an unknown budget in Redis is an error.
    ///   - burndown: output burndown per model (default: Claude 5x models, 1x otherwise).
    ///   - instanceID: 1-64 characters of `A-Z a-z 0-9 . _ -`; default `<host>-<pid>`.
    /// - Throws: `LedgerError` `.invalidConfiguration` or `.invalidArgument` naming the bad setting (a budget,
    ///   a burndown rate that is not a finite number from 0 to 100, the key prefix, the instance id).
    public init(
        redis: RedisClient, keyPrefix: String = "quotakeeper:", budgets: [BudgetConfiguration] = [],
        burndown: BurndownTable = .bedrockDefaults, instanceID: String? = nil,
        logger: Logger = Logger(label: "quotakeeper.ledger", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(LedgerError) {
        if keyPrefix.contains(where: { "{}".contains($0) || $0.isWhitespace }) {
            throw LedgerError(code: .invalidArgument, message: "key prefix \"\(keyPrefix)\" must not contain braces or spaces")
        }
        var configurations: [BudgetID: BudgetConfiguration] = [:]
        for budget in budgets {
            try budget.validate()
            configurations[budget.id] = budget
        }
        for (pattern, rate) in burndown.rates.map({ ($0.key, $0.value) }) + [("default", burndown.defaultRate)]
        where !rate.isFinite || !(0...100).contains(rate) {
            throw LedgerError(code: .invalidConfiguration, message: "burndown rate for \(pattern) must be a number from 0 to 100, not \(rate)")
        }
        let instance = instanceID ?? Self.defaultInstanceID()
        guard Self.isValidName(instance) else {
            throw LedgerError(code: .invalidArgument, message: "instance id \"\(instance)\" must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
        self.redis = redis
        self.keyPrefix = keyPrefix
        self.burndown = burndown
        self.instanceID = instance
        self.configurations = configurations
        self.logger = logger
    }

    // MARK: Reserving

    /// Holds `requests` and `tokens` against every limit of `budget` at once (after the breaker check), or
    /// throws which limit refused and when it will fit.
    ///
    /// Idempotent by `id`: a reserve repeated with the same id (a retry after a lost reply) returns the first
    /// admission and holds nothing more. When Redis's answer is lost (timeout, connection closed after the
    /// write), this retries with the same id, up to `unknownOutcomeAttempts` attempts in all.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_reserve`): TIME + HMGET + GET + HSET + SET; one more HMGET when the
    /// window moves to a new bucket, when the budget has app caps or to compute a denial's retry-after; 2-3
    /// ZSET commands with an in-flight limit or a half-open breaker. Re-seeds and retries once if Redis lost
    /// the budget.
    /// - Parameters:
    ///   - budget: the model or profile in a Region.
    ///   - app: the calling app (1-64 characters of `A-Z a-z 0-9 . _ -`), for caps and history.
    ///   - priority: `.batch` callers may use only the budget's batch ceiling.
    ///   - tokens: what Bedrock holds: input + cache reads + cache writes + max output tokens.
    ///   - requests: requests to hold (1 per call).
    ///   - lease: the in-flight lease, if the budget limits calls in flight (default: its configured lease).
    ///   - id: the reservation's id, unique per reservation (1-64 characters of `A-Z a-z 0-9 . _ -`; default a
    ///     random UUID). Its record lives until the hold leaves the window or the lease ends, whichever is later.
    /// While callers wait in the budget's line, a reserve is refused (reason `.waiters`) when a ticket is
    /// ahead of where it would be: the line's callers come first (`acquire` waits in line instead).
    /// - Throws: `LedgerError` `.budgetExhausted` (with `denial`), `.invalidArgument`, `.unknownBudget`,
    ///   `.storeUnavailable`.
    public func reserve(
        _ budget: BudgetID, app: String, priority: Priority = .interactive, tokens: Int, requests: Int = 1,
        lease: Duration? = nil, id: String = QuotaLedger.randomReservationID()
    ) async throws -> Reservation {
        switch try await attempt(
            budget, ReserveRequest(app: app, priority: priority, tokens: tokens, requests: requests, lease: lease, id: id),
            waiting: nil)
        {
        case .admitted(let reservation):
            return reservation
        case .denied(let denial):
            throw LedgerError(code: .budgetExhausted, message: denial.description, denial: denial)
        case .queued(_, let denial):   // (not sent without waiting arguments)
            throw LedgerError(code: .budgetExhausted, message: denial.description, denial: denial)
        }
    }

    /// Reserves, waiting while the budget is exhausted, in the budget's waiting line: the first denied attempt
    /// takes a ticket (in the same call), ordered by priority class, then per app by arrival with equal shares
    /// between apps (`BudgetConfiguration.WaitingLine`); each later attempt comes back exactly when the ledger
    /// says the ticket is due, and is admitted then unless budget was spent otherwise (e.g. an operator
    /// lowered a limit). A caller the window will have room for within its wait, at the head of the line, is
    /// booked instead: admitted at once for that later time (`Reservation.startsIn`), and this returns when the
    /// time has come, so it does not come back. Without a ticket (a full line, an in-flight or app-cap limit) each wait is the
    /// denial's retry-after plus jitter. A caller whose turn comes after `maxWait` leaves the line at once, and
    /// until that turn this process refuses the app's next callers of the class that cannot wait so long
    /// without asking Redis (``LineTurns``). A caller cancelled while it waits gives its ticket back.
    ///
    /// Redis cost: one `reserve` per attempt: one when the budget has room or the caller is booked, usually two when
    /// it waits with a ticket,
    /// none when this process already knows its turn is beyond `maxWait`; one more when cancelled holding a ticket.
    /// - Throws: `LedgerError` `.waitBeyondDeadline` (with the denial: when it would have been due) when its
    ///   turn comes after `maxWait` or never will, `.budgetExhausted` for a breaker that is open beyond it,
    ///   `CancellationError` when the task is cancelled while waiting, and any error of `reserve`.
    public func acquire(
        _ budget: BudgetID, app: String, priority: Priority = .interactive, tokens: Int, requests: Int = 1,
        lease: Duration? = nil, maxWait: Duration
    ) async throws -> Reservation {
        let clock = ContinuousClock()
        let deadline = clock.now + maxWait
        let jitterCap = min(max((configurations[budget]?.granularity ?? .seconds(1)) / 4, .milliseconds(5)), .milliseconds(250))
        let request = ReserveRequest(app: app, priority: priority, tokens: tokens, requests: requests, lease: lease, id: Self.randomReservationID())
        let turnKey = LineTurns.Key(budget: budget, app: app, priority: priority)
        if let known = lineTurns.refusal(turnKey, deadline: deadline, now: clock.now) {
            throw LedgerError(code: .waitBeyondDeadline, message: "\(known.description); that is beyond maxWait \(maxWait)", denial: known)
        }
        var ticket: WaitingTicket?
        while true {
            if Task.isCancelled {
                if ticket != nil { leaveLineDetached(budget, ticketID: request.id) }
                throw CancellationError()
            }
            let remaining = deadline - clock.now
            // While it holds a ticket a caller always says it waits (at least 1 ms), so that the call that
            // finds its turn too late also takes it out of the line.
            let waiting = remaining >= .milliseconds(1) || ticket != nil ? LedgerWire.Waiting(maxWait: max(remaining, .milliseconds(1))) : nil
            let sent = clock.now
            var wait: Duration
            let denial: Denial
            switch try await attempt(budget, request, waiting: waiting, mayShareACall: ticket == nil) {
            case .admitted(var reservation):
                lineTurns.forget(turnKey)
                reservation.waitingTicket = ticket
                if reservation.startsIn > .zero {
                    // A booking: admitted for a later time; Bedrock may be called only then. Cancelled meanwhile,
                    // it gives the admission back and leaves the line at once.
                    do {
                        try await Task.sleep(until: reservation.admittedAt, clock: .continuous)
                    } catch {
                        let record = ReservationRecord(reservation)
                        _ = consume reservation
                        releaseBookingDetached(record)
                        throw error
                    }
                }
                return reservation
            case .queued(let issued, let due):
                // The app's next caller of the class would be due no earlier than the line's pace says.
                if let next = issued.nextCallerTurn { lineTurns.learn(turnKey, due, turn: sent + next) } else { lineTurns.forget(turnKey) }
                if ticket == nil { ticket = issued }
                // Precisely when the ticket is due (no jitter, no earlier poll), or at the deadline: the ledger
                // granted it against what was left of maxWait when it answered, so it never throws here
                // holding a ticket (the next attempt is admitted or leaves the line).
                do {
                    try await Task.sleep(for: min(due.retryAfter ?? .zero, max(deadline - clock.now, .zero)))
                } catch {
                    leaveLineDetached(budget, ticketID: request.id)
                    throw error
                }
                continue
            case .denied(let refused):
                denial = refused
                guard var retry = refused.retryAfter else {
                    throw LedgerError(code: refused.reason == .breakerOpen ? .budgetExhausted : .waitBeyondDeadline,
                                      message: "\(refused.description); not within maxWait \(maxWait)", denial: refused)
                }
                if waiting != nil, [.requestsPerWindow, .tokensPerWindow, .tokensPerDay, .batchCeiling, .waiters].contains(refused.reason) {
                    lineTurns.learn(turnKey, refused, turn: sent + retry)   // the line's answer: this class's turn
                }
                if refused.reason == .inFlight { retry = min(retry, .milliseconds(100)) }  // a settle may free it sooner
                wait = retry + .microseconds(Int64.random(in: 0...jitterCap.millisecondsRoundedUp * 1000))
            }
            guard clock.now + wait <= deadline else {
                throw LedgerError(
                    code: denial.reason == .breakerOpen ? .budgetExhausted : .waitBeyondDeadline,
                    message: "\(denial.description); that is beyond maxWait \(maxWait)", denial: denial)
            }
            try await Task.sleep(for: wait)
        }
    }

    /// Takes a cancelled waiter's ticket out of the budget's line (`ledger_reserve_leave`), in a task of its own
    /// (the waiter's task is cancelled); a failure leaves the ticket to expire at its due time + grace.
    func leaveLineDetached(_ budget: BudgetID, ticketID: String) {
        let ledger = self
        Task {
            do {
                _ = try await ledger.evaluate(LedgerScripts.leaveLine, budget, [ticketID], keys: ledger.keys(budget).leaveLine)
            } catch {
                ledger.logger.debug("a cancelled waiter's ticket stays until it expires", metadata: ["quotakeeper.error": "\(error)"])
            }
        }
    }

    /// Gives back a booking whose caller was cancelled before its time came, and takes it out of the line
    /// (for `status`), in a task of its own; a failure leaves it counted until it leaves the window.
    func releaseBookingDetached(_ record: ReservationRecord) {
        let ledger = self
        Task {
            do {
                _ = try await ledger.finish(record, mode: .release, usage: TokenUsage(inputTokens: 0, outputTokens: 0), outcome: .notCounted, latency: .zero)
            } catch {
                ledger.logger.debug("a cancelled booking stays counted until it leaves the window", metadata: ["quotakeeper.error": "\(error)"])
            }
        }
        leaveLineDetached(record.budget, ticketID: record.id)
    }

    /// One reservation's arguments (validated by `attempt`).
    struct ReserveRequest {
        var app: String
        var priority: Priority
        var tokens: Int
        var requests: Int
        var lease: Duration?
        var id: String
    }

    enum AttemptOutcome: ~Copyable {
        case admitted(Reservation)
        case denied(Denial)
        case queued(WaitingTicket, Denial)
    }

    /// One `ledger_reserve` call (with a ticket in the waiting line when `waiting` is set). With `mayShareACall`
    /// (a caller that holds no ticket), it may go in a batch of the budget's calls that overlap it
    /// (``reserveCoalescer``): admitted there on the everyday path as alone, or sent alone after it.
    func attempt(
        _ budget: BudgetID, _ request: ReserveRequest, waiting: LedgerWire.Waiting?, mayShareACall: Bool = true
    ) async throws -> AttemptOutcome {
        let (app, priority, tokens, requests, lease, id) =
            (request.app, request.priority, request.tokens, request.requests, request.lease, request.id)
        try Self.validateName(app, "app")
        try Self.validateName(id, "reservation id")
        guard (0...100_000_000).contains(tokens) else {
            throw LedgerError(code: .invalidArgument, message: "tokens must be from 0 to 10^8, not \(tokens)")
        }
        guard (1...1000).contains(requests) else {
            throw LedgerError(code: .invalidArgument, message: "requests must be from 1 to 1000, not \(requests)")
        }
        if let lease, lease <= .zero {
            throw LedgerError(code: .invalidArgument, message: "lease must be positive, not \(lease)")
        }
        let wire = LedgerWire.ReserveArguments(
            reservationID: id, app: app, priority: priority, requests: requests, tokens: tokens, lease: lease, waiting: waiting)
        let send = { @Sendable [self] in
            try await retryingUnknownOutcome {
                mayShareACall ? try await reserveCoalescer.reply(to: wire, of: budget, ledger: self) : try await reserveAlone(wire, of: budget)
            }
        }
        // A waiting caller's answer is read even if it is cancelled meanwhile (in a task that does not inherit the
        // cancellation): a booking or a ticket it got is then given back by `acquire`, never left unknown.
        let reply = waiting == nil ? try await send() : try await Task { try await send() }.value
        switch try LedgerWire.ReserveReply(reply, budget: budget) {
        case .admitted(let sequence, let epoch, let isProbe, let admittedAt, let repeated, let startsIn):
            if !repeated {
                Counter(label: "quotakeeper_ledger_reservations_total", dimensions: [("budget", budget.description), ("result", "admitted")]).increment()
            }
            return .admitted(Reservation(
                budget: budget, app: app, priority: priority, id: id, sequence: sequence, epoch: epoch,
                requests: requests, heldTokens: tokens, isProbe: isProbe, admittedAtMilliseconds: admittedAt,
                admittedAt: .now + startsIn, startsIn: startsIn, ledger: self))
        case .queued(let ticket, let denial):
            Counter(label: "quotakeeper_ledger_reservations_total", dimensions: [("budget", budget.description), ("result", "queued")]).increment()
            return .queued(ticket, denial)
        case .denied(let denial):
            Counter(label: "quotakeeper_ledger_reservations_total", dimensions: [("budget", budget.description), ("result", denial.reason.rawValue)]).increment()
            logger.debug("reservation denied", metadata: [
                "quotakeeper.budget": "\(budget)", "quotakeeper.app": "\(app)",
                "quotakeeper.limit": "\(denial.reason.rawValue)", "quotakeeper.retry_after": "\(denial.retryAfter.map { "\($0)" } ?? "never")",
            ])
            return .denied(denial)
        }
    }

    /// One `ledger_reserve` call.
    func reserveAlone(_ call: LedgerWire.ReserveArguments, of budget: BudgetID) async throws -> RedisReply {
        try await run(LedgerScripts.reserve, budget, call.arguments, keys: call.keys(keys(budget)))
    }

    /// One `ledger_reserve_many` call: per call, `ledger_reserve`'s reply, or nil for one to send alone.
    func reserveMany(_ calls: [LedgerWire.ReserveArguments], of budget: BudgetID) async throws -> [RedisReply?] {
        let wire = LedgerWire.ReserveManyArguments(calls: calls)
        let reply = try await evaluate(LedgerScripts.reserveMany, budget, wire.arguments, keys: wire.keys(keys(budget)))
        return try LedgerWire.manyReplies(reply, calls: calls.count, of: LedgerScripts.reserveMany) ?? calls.map { _ in nil }
    }

    // MARK: Settling (called by Reservation)

    func finish(
        _ reservation: ReservationRecord, mode: LedgerWire.SettleMode, usage: TokenUsage, outcome: CallOutcome,
        latency: Duration
    ) async throws -> Settlement {
        for (name, value) in [
            ("inputTokens", usage.inputTokens), ("outputTokens", usage.outputTokens),
            ("cacheWriteInputTokens", usage.cacheWriteInputTokens),
        ] where !(0...100_000_000).contains(value) {
            throw LedgerError(code: .invalidArgument, message: "\(name) must be from 0 to 10^8, not \(value)")
        }
        guard latency >= .zero else {
            throw LedgerError(code: .invalidArgument, message: "latency must not be negative, not \(latency)")
        }
        let wire = LedgerWire.SettleArguments(
            reservationID: reservation.id, mode: mode, usage: usage, burndown: burndown, model: reservation.budget.model,
            outcome: outcome, latency: latency, instance: instanceID)
        let call = SettleCall(arguments: wire, reservation: reservation)
        var attempts = 0
        let reply = try await retryingUnknownOutcome {
            attempts += 1
            return try await settleCoalescer.reply(to: call, of: reservation.budget, ledger: self)
        }
        let settlement: Settlement
        switch try LedgerWire.SettleReply(reply, to: wire) {
        case .done(let done):
            settlement = done
        case .alreadyDone(let earlier, let done) where attempts > 1 && earlier == mode:
            settlement = done   // our own first attempt went through; its reply was lost
        case .alreadyDone(let earlier, _):
            throw LedgerError(
                code: .alreadySettled,
                message: "reservation \(reservation.id) of \(reservation.budget) was already \(earlier == .settle ? "settled" : "released"); nothing changed")
        case .unknownReservation:
            throw LedgerError(
                code: .unknownReservation,
                message: "budget \(reservation.budget) has no reservation \(reservation.id) (never admitted, expired or lost); nothing changed")
        }
        logger.trace("reservation \(mode.rawValue)d", metadata: [
            "quotakeeper.budget": "\(reservation.budget)", "quotakeeper.app": "\(reservation.app)",
            "quotakeeper.charged_tokens": "\(settlement.chargedTokens)", "quotakeeper.breaker": "\(settlement.breakerState.rawValue)",
        ])
        return settlement
    }

    /// One settlement or release to send: its arguments, and the reservation (whose Redis clock names the history
    /// minute when it is sent).
    struct SettleCall: Sendable {
        var arguments: LedgerWire.SettleArguments
        var reservation: ReservationRecord
    }

    /// One `ledger_settle` call, in the history minute of now.
    func settleAlone(_ call: SettleCall, of budget: BudgetID) async throws -> RedisReply {
        let history = historyKey(budget, minute: call.reservation.historyMinute)
        return try await run(LedgerScripts.settle, budget, call.arguments.arguments, keys: call.arguments.keys(keys(budget)) + [history])
    }

    /// One `ledger_settle_many` call, all in the history minute of now as the first call's reservation reckons it:
    /// per call, `ledger_settle`'s reply, or nil for one to send alone.
    func settleMany(_ calls: [SettleCall], of budget: BudgetID) async throws -> [RedisReply?] {
        let wire = LedgerWire.SettleManyArguments(calls: calls.map(\.arguments), historyMinute: calls[0].reservation.historyMinute)
        let reply = try await evaluate(LedgerScripts.settleMany, budget, wire.arguments, keys: wire.keys(keys(budget)))
        return try LedgerWire.manyReplies(reply, calls: calls.count, of: LedgerScripts.settleMany) ?? calls.map { _ in nil }
    }

    /// Attempts in all for an idempotent script call (reserve, settle) whose outcome was unknown
    /// (`RedisError.outcomeUnknown`: a timeout, or a connection lost after the command was written). Each
    /// attempt is bounded by the command timeout.
    static let unknownOutcomeAttempts = 3

    /// Runs `body`, again with the same arguments while Redis's answer is lost and attempts remain.
    func retryingUnknownOutcome(_ body: () async throws -> RedisReply) async throws -> RedisReply {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch let error as LedgerError where error.code == .storeUnavailable && attempt < Self.unknownOutcomeAttempts {
                guard let redisError = error.underlying as? RedisError,
                      redisError.outcomeUnknown || redisError.code == .connectionClosed
                else { throw error }
                try Task.checkCancellation()
                attempt += 1
                logger.debug("outcome unknown; retrying with the same reservation id", metadata: ["quotakeeper.error": "\(redisError.code)"])
            }
        }
    }

    // MARK: Script calls

    /// Runs a ledger script for `budget`; re-seeds the budget from its configuration and runs it once more
    /// if Redis has no configuration for it (a restart without persistence, a deleted budget).
    func run(
        _ script: RedisScript, _ budget: BudgetID, _ arguments: [String], keys: [String]? = nil
    ) async throws -> RedisReply {
        try budget.validate()
        var reply = try await evaluate(script, budget, arguments, keys: keys)
        if reply.tag == "no_budget" {
            guard let configuration = configurations[budget] else {
                throw LedgerError(code: .unknownBudget, message: "budget \(budget) is not configured in Redis or in this ledger")
            }
            logger.debug("budget missing in Redis; seeding it", metadata: ["quotakeeper.budget": "\(budget)"])
            try await seed(configuration)
            reply = try await evaluate(script, budget, arguments, keys: keys)
        }
        if reply.tag == "no_budget" {
            throw LedgerError(code: .unknownBudget, message: "budget \(budget) is not configured in Redis")
        }
        if reply.tag == "invalid" {
            let fields = reply.array ?? []
            let argument = fields.count > 1 ? fields[1].string ?? "?" : "?"
            let reason = fields.count > 2 ? fields[2].string ?? "" : ""
            throw LedgerError(code: .invalidArgument, message: "\(script.name) refused \(argument): \(reason)")
        }
        return reply
    }

    /// Runs a ledger script; `keys` default to the budget's hash alone.
    func evaluate(
        _ script: RedisScript, _ budget: BudgetID, _ arguments: [String], keys: [String]? = nil
    ) async throws -> RedisReply {
        do {
            return try await redis.evalScript(script, keys: keys ?? [ledgerKey(budget)], arguments: arguments)
        } catch let error as RedisError {
            throw LedgerError(
                code: .storeUnavailable, message: "\(script.name) for budget \(budget): \(error.message)", underlying: error)
        }
    }

    /// `<prefix>{<model>@<region>}:ledger`, the budget's hash.
    public func ledgerKey(_ budget: BudgetID) -> String { keys(budget).ledger }

    func keys(_ budget: BudgetID) -> LedgerWire.BudgetKeys { LedgerWire.BudgetKeys(prefix: keyPrefix, budget: budget) }

    static func unexpected(_ reply: RedisReply, _ script: RedisScript) -> LedgerError {
        LedgerError(code: .unexpectedReply, message: "\(script.name) answered \(reply)")
    }

    /// A random (version 4) UUID string in `UUID().uuidString`'s form, a new reservation's default id, from the C
    /// library's cryptographic generator (`arc4random_buf`: no system call per id) and written out here: Foundation's
    /// `UUID()` opens and reads /dev/urandom on every call on Linux (a fifth of a busy process's CPU), and its
    /// `uuidString` formats each byte with `printf`.
    @usableFromInline static func randomReservationID() -> String {
        var random = (UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &random) { bytes in
            arc4random_buf(bytes.baseAddress!, 16)
            bytes[6] = bytes[6] & 0x0F | 0x40   // version 4
            bytes[8] = bytes[8] & 0x3F | 0x80   // RFC 4122 variant
        }
        return withUnsafeBytes(of: random) { bytes in
            String(unsafeUninitializedCapacity: 36) { text in
                let digits: StaticString = "0123456789ABCDEF"
                var at = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        text[at] = UInt8(ascii: "-")
                        at += 1
                    }
                    text[at] = digits.utf8Start[Int(byte >> 4)]
                    text[at + 1] = digits.utf8Start[Int(byte & 0x0F)]
                    at += 2
                }
                return at
            }
        }
    }

    /// 1-64 characters of `A-Z a-z 0-9 . _ -` (the scripts' rule, `%w` in Lua's C locale), tested on the bytes:
    /// asking Unicode properties for every character was a twentieth of a busy process's CPU.
    static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }

    static func validateName(_ name: String, _ what: String) throws(LedgerError) {
        guard isValidName(name) else {
            throw LedgerError(code: .invalidArgument, message: "\(what) \"\(name)\" must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
    }

    private static func defaultInstanceID() -> String {
        let host = ProcessInfo.processInfo.hostName.prefix(40).map { isValidName(String($0)) ? $0 : "-" }
        return String(host) + "-" + String(ProcessInfo.processInfo.processIdentifier)
    }
}

extension RedisReply {
    /// The first element of a script's array reply (`ok`, `denied`, `no_budget`, ...).
    var tag: String? { array?.first?.string }
    /// Every element as an integer (0 where it is not one).
    var integers: [Int64] { (array ?? []).map { $0.integer ?? 0 } }
}
