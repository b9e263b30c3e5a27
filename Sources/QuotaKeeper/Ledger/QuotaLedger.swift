import Foundation
import Logging
import Metrics
import QuotaKeeperRedis

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

    /// Creates a ledger; nothing is sent to Redis until the first call (`seedBudgets()` seeds eagerly).
    /// - Parameters:
    ///   - redis: the client to use.
    ///   - keyPrefix: prefix of every key, without braces (default `quotakeeper:`).
    ///   - budgets: the budgets this instance knows; an unknown budget in Redis is an error.
    ///   - burndown: output burndown per model (default: Claude 5x models, 1x otherwise).
    ///   - instanceID: 1-64 characters of `A-Z a-z 0-9 . _ -`; default `<host>-<pid>`.
    /// - Throws: `LedgerError` `.invalidConfiguration` or `.invalidArgument` naming the bad setting.
    public init(
        redis: RedisClient, keyPrefix: String = "quotakeeper:", budgets: [BudgetConfiguration] = [],
        burndown: BurndownTable = .bedrockDefaults, instanceID: String? = nil,
        logger: Logger = Logger(label: "quotakeeper.ledger")
    ) throws(LedgerError) {
        if keyPrefix.contains(where: { "{}".contains($0) || $0.isWhitespace }) {
            throw LedgerError(code: .invalidArgument, message: "key prefix \"\(keyPrefix)\" must not contain braces or spaces")
        }
        var configurations: [BudgetID: BudgetConfiguration] = [:]
        for budget in budgets {
            try budget.validate()
            configurations[budget.id] = budget
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
    /// Redis cost: one `EVALSHA` (`ledger_reserve`): TIME + HMGET + HSET; one more HMGET when the window moves
    /// to a new bucket, when the budget has app caps or to compute a denial's retry-after; 2-3 ZSET commands
    /// with an in-flight limit or a half-open breaker. Re-seeds and retries once if Redis lost the budget.
    /// - Parameters:
    ///   - budget: the model or profile in a Region.
    ///   - app: the calling app (1-64 characters of `A-Z a-z 0-9 . _ -`), for caps and history.
    ///   - priority: `.batch` callers may use only the budget's batch ceiling.
    ///   - tokens: input estimate + max output tokens (+ cache-write estimate): what Bedrock holds.
    ///   - requests: requests to hold (1 per call).
    ///   - lease: the in-flight lease, if the budget limits calls in flight (default: its configured lease).
    /// - Throws: `LedgerError` `.budgetExhausted` (with `denial`), `.invalidArgument`, `.unknownBudget`,
    ///   `.storeUnavailable`.
    public func reserve(
        _ budget: BudgetID, app: String, priority: Priority = .interactive, tokens: Int, requests: Int = 1,
        lease: Duration? = nil
    ) async throws -> Reservation {
        try Self.validateName(app, "app")
        guard (0...100_000_000).contains(tokens) else {
            throw LedgerError(code: .invalidArgument, message: "tokens must be from 0 to 10^8, not \(tokens)")
        }
        guard (1...1000).contains(requests) else {
            throw LedgerError(code: .invalidArgument, message: "requests must be from 1 to 1000, not \(requests)")
        }
        if let lease, lease <= .zero {
            throw LedgerError(code: .invalidArgument, message: "lease must be positive, not \(lease)")
        }
        // The lease goes only when given: the script's everyday path is cheaper with one argument less.
        let arguments = [app, priority.rawValue, String(requests), String(tokens)] + (lease.map { [String($0.millisecondsRoundedUp)] } ?? [])
        let reply = try await run(LedgerScripts.reserve, budget, arguments)
        switch reply.tag {
        case "ok":
            let fields = reply.integers
            guard fields.count >= 7 else { throw Self.unexpected(reply, LedgerScripts.reserve) }
            Counter(label: "quotakeeper_ledger_reservations_total", dimensions: [("budget", budget.description), ("result", "admitted")]).increment()
            return Reservation(
                budget: budget, app: app, priority: priority, id: fields[1], requests: requests, heldTokens: tokens,
                isProbe: fields[5] == 1, admittedAtMilliseconds: fields[6], admittedAt: .now, epoch: fields[2], bucket: fields[3],
                dayBucket: fields[4], ledger: self)
        case "denied":
            let denial = try Self.denial(reply, budget)
            Counter(label: "quotakeeper_ledger_reservations_total", dimensions: [("budget", budget.description), ("result", denial.reason.rawValue)]).increment()
            logger.debug("reservation denied", metadata: [
                "quotakeeper.budget": "\(budget)", "quotakeeper.app": "\(app)",
                "quotakeeper.limit": "\(denial.reason.rawValue)", "quotakeeper.retry_after": "\(denial.retryAfter.map { "\($0)" } ?? "never")",
            ])
            throw LedgerError(code: .budgetExhausted, message: denial.description, denial: denial)
        default:
            throw Self.unexpected(reply, LedgerScripts.reserve)
        }
    }

    /// Reserves, waiting while the budget is exhausted: each wait is the denial's retry-after plus jitter, as
    /// long as it ends within `maxWait`.
    ///
    /// Redis cost: one `reserve` per attempt.
    /// - Throws: `LedgerError` `.budgetExhausted` (with the last denial) when the budget will not fit within
    ///   `maxWait` or never will, `CancellationError` when the task is cancelled while waiting, and any error
    ///   of `reserve`.
    public func acquire(
        _ budget: BudgetID, app: String, priority: Priority = .interactive, tokens: Int, requests: Int = 1,
        lease: Duration? = nil, maxWait: Duration
    ) async throws -> Reservation {
        let clock = ContinuousClock()
        let deadline = clock.now + maxWait
        let jitterCap = min(max((configurations[budget]?.granularity ?? .seconds(1)) / 4, .milliseconds(5)), .milliseconds(250))
        while true {
            do {
                return try await reserve(budget, app: app, priority: priority, tokens: tokens, requests: requests, lease: lease)
            } catch let error as LedgerError where error.code == .budgetExhausted {
                guard let denial = error.denial, var wait = denial.retryAfter else { throw error }
                if denial.reason == .inFlight { wait = min(wait, .milliseconds(100)) }  // a settle may free it sooner
                wait += .microseconds(Int64.random(in: 0...jitterCap.millisecondsRoundedUp * 1000))
                guard clock.now + wait <= deadline else {
                    throw LedgerError(
                        code: .budgetExhausted,
                        message: "\(denial.description); that is beyond maxWait \(maxWait)", denial: denial)
                }
                try await Task.sleep(for: wait)
            }
        }
    }

    // MARK: Settling (called by Reservation)

    func finish(
        _ reservation: ReservationRecord, mode: String, usage: TokenUsage, outcome: CallOutcome, latency: Duration
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
        let arguments = [
            mode, String(reservation.id), String(reservation.epoch), reservation.app, String(reservation.bucket),
            String(reservation.dayBucket), String(reservation.requests), String(reservation.heldTokens),
            String(usage.inputTokens), String(usage.cacheWriteInputTokens), String(usage.outputTokens),
            String(burndown.rate(for: reservation.budget.model)), outcome.rawValue,
            String(latency.millisecondsRoundedUp), instanceID, reservation.isProbe ? "1" : "0",
        ]
        let reply = try await run(
            LedgerScripts.settle, reservation.budget, arguments,
            keys: [historyKey(reservation.budget, minute: reservation.historyMinute)])
        let fields = reply.array ?? []
        guard reply.tag == "settled" || reply.tag == "released", fields.count == 4,
              let charged = fields[1].integer, let delta = fields[2].integer,
              let state = fields[3].string.flatMap(BreakerState.init(rawValue:))
        else { throw Self.unexpected(reply, LedgerScripts.settle) }
        logger.trace("reservation \(mode)d", metadata: [
            "quotakeeper.budget": "\(reservation.budget)", "quotakeeper.app": "\(reservation.app)",
            "quotakeeper.charged_tokens": "\(charged)", "quotakeeper.breaker": "\(state.rawValue)",
        ])
        return Settlement(chargedTokens: Int(charged), returnedTokens: Int(-delta), breakerState: state)
    }

    // MARK: Script calls

    /// Runs a ledger script for `budget`; re-seeds the budget from its configuration and runs it once more
    /// if Redis has no configuration for it (a restart without persistence, a deleted budget).
    /// `keys`: the script's keys after the ledger hash.
    func run(_ script: RedisScript, _ budget: BudgetID, _ arguments: [String], keys: [String] = []) async throws -> RedisReply {
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

    func evaluate(
        _ script: RedisScript, _ budget: BudgetID, _ arguments: [String], keys: [String] = []
    ) async throws -> RedisReply {
        do {
            return try await redis.evalScript(script, keys: [ledgerKey(budget)] + keys, arguments: arguments)
        } catch let error as RedisError {
            throw LedgerError(
                code: .storeUnavailable, message: "\(script.name) for budget \(budget): \(error.message)", underlying: error)
        }
    }

    /// `<prefix>{<model>@<region>}:ledger`, the budget's hash.
    public func ledgerKey(_ budget: BudgetID) -> String { "\(keyPrefix){\(budget)}:ledger" }

    static func denial(_ reply: RedisReply, _ budget: BudgetID) throws -> Denial {
        let fields = reply.array ?? []
        guard fields.count == 6, let reason = fields[1].string.flatMap(Denial.Reason.init(rawValue:)),
              let usage = fields[2].integer, let limit = fields[3].integer, let retry = fields[4].integer
        else { throw unexpected(reply, LedgerScripts.reserve) }
        return Denial(
            budget: budget, reason: reason, dimension: fields[5].string ?? "", usage: Int(usage), limit: Int(limit),
            retryAfter: retry < 0 ? nil : .milliseconds(retry))
    }

    static func unexpected(_ reply: RedisReply, _ script: RedisScript) -> LedgerError {
        LedgerError(code: .unexpectedReply, message: "\(script.name) answered \(reply)")
    }

    static func isValidName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { $0 < 128 && (Character(Unicode.Scalar($0)).isLetter || Character(Unicode.Scalar($0)).isNumber || "._-".utf8.contains($0)) }
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
