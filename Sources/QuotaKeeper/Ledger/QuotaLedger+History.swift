import QuotaKeeperRedis

/// The per-minute history of settled calls (docs/ledger.md, "History"): one hash per budget and minute,
/// `<prefix>{<budget>}:hist:<minute>` with `minute = floor(Redis ms / 60000)`, written by the settle and replay
/// scripts (`history_add` in `lua/ledger_lib_history.lua`). Each field is a row of 4 little-endian doubles
/// (requests, charged tokens, input with cache writes, output): one per app for the first `historyApps` apps of
/// the minute and `:other` for every later app, so the rows sum to exactly what was settled.
///
/// Reading needs no script: each minute is one `HGETALL` of at most `historyApps` + 1 fields (at most 1,001), so
/// no single command's work grows with the span read; minutes go out in pipelines of `historyMinutesPerRoundTrip`.
extension QuotaLedger {
    /// Minutes read per round trip (one command each).
    static let historyMinutesPerRoundTrip = 120
    /// The longest history retention (7 days) in minutes, and how far a history minute may be from Redis's clock
    /// (`HISTORY_SKEW_MINUTES` in the scripts).
    static let historyRetentionMinutes: Int64 = 10_080
    static let historySkewMinutes: Int64 = 5
    /// Keys per `UNLINK` when a budget's history is deleted.
    static let historyKeysPerDeletion = 1000

    /// `<prefix>{<model>@<region>}:hist:<minute>`: the history of one minute (minute = Redis ms / 60000).
    public func historyKey(_ budget: BudgetID, minute: Int64) -> String { keys(budget).history(minute: minute) }

    /// Settled requests and tokens per minute over the last `minutes` (at most 7 days) by Redis's clock, per app,
    /// oldest first; only minutes with settled calls.
    ///
    /// Redis cost: `TIME`, then one `HGETALL` per minute (`HMGET` of one field with `app`), each of at most
    /// `historyApps` + 1 fields, pipelined `historyMinutesPerRoundTrip` at a time; for operators.
    /// - Parameter app: only this app's row (nil = every row; the totals are then that app's).
    /// - Throws: `LedgerError` `.invalidArgument`, `.storeUnavailable`, `.unexpectedReply`.
    public func history(of budget: BudgetID, minutes: Int, app: String? = nil) async throws -> [HistoryMinute] {
        guard (1...Int(Self.historyRetentionMinutes)).contains(minutes) else {
            throw LedgerError(code: .invalidArgument, message: "minutes must be from 1 to 10080, not \(minutes)")
        }
        if let app { try Self.validateName(app, "app") }
        try budget.validate()
        let current = try await redisMilliseconds() / 60_000
        var result: [HistoryMinute] = []
        for start in stride(from: current - Int64(minutes) + 1, through: current, by: Self.historyMinutesPerRoundTrip) {
            let chunk = Array(start...min(start + Int64(Self.historyMinutesPerRoundTrip) - 1, current))
            let commands = chunk.map { minute in
                let key = historyKey(budget, minute: minute)
                return RedisCommand(app.map { ["HMGET", key, $0] } ?? ["HGETALL", key])
            }
            for (minute, reply) in zip(chunk, try await historyPipeline(commands)) {
                let rows = try HistoryWire.rows(reply, app: app)
                if let row = HistoryMinute(startMilliseconds: minute * 60_000, rows: rows) { result.append(row) }
            }
        }
        return result
    }

    /// Unlinks every history minute the budget can have: the longest retention back, the skew allowance ahead.
    func deleteHistory(of budget: BudgetID) async throws -> Int {
        let current = try await redisMilliseconds() / 60_000
        let minutes = Array((current - Self.historyRetentionMinutes - Self.historySkewMinutes - 1)...(current + Self.historySkewMinutes))
        let commands = stride(from: 0, to: minutes.count, by: Self.historyKeysPerDeletion).map { start in
            RedisCommand(["UNLINK"] + minutes[start..<min(start + Self.historyKeysPerDeletion, minutes.count)].map {
                historyKey(budget, minute: $0)
            })
        }
        return try await historyPipeline(commands).reduce(0) { $0 + Int($1.integer ?? 0) }
    }

    /// Redis's clock (`TIME`) in milliseconds since 1970: history minutes are Redis minutes.
    func redisMilliseconds() async throws -> Int64 {
        let reply: RedisReply
        do {
            reply = try await redis.send("TIME")
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "TIME: \(error.message)", underlying: error)
        }
        let parts = reply.integers
        guard parts.count == 2, parts[0] > 0 else { throw LedgerError(code: .unexpectedReply, message: "TIME answered \(reply)") }
        return parts[0] * 1000 + parts[1] / 1000
    }

    private func historyPipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let replies: [RedisReply]
        do {
            replies = try await redis.pipeline(commands)
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "history: \(error.message)", underlying: error)
        }
        if let failed = replies.first(where: { if case .error = $0 { true } else { false } }) {
            throw LedgerError(code: .unexpectedReply, message: "history: Redis answered \(failed)")
        }
        return replies
    }
}

/// The history rows' wire format, decoded in one place.
enum HistoryWire {
    /// The field of the row shared by every app beyond the first `historyApps` of a minute (never an app name).
    static let otherField = ":other"

    /// The rows of one minute's `HGETALL` reply (or of `HMGET key app`): app name (nil for the `other` row) and
    /// usage. Fields that are neither a valid app name nor `:other`, or whose value is not a row, are skipped:
    /// history written by an earlier layout, or by hand.
    static func rows(_ reply: RedisReply, app: String?) throws -> [(app: String?, usage: HistoryMinute.Usage)] {
        guard let elements = reply.array else { throw LedgerError(code: .unexpectedReply, message: "history answered \(reply)") }
        let pairs: [(RedisReply, RedisReply)]
        if let app {
            pairs = elements.first.map { [(.bulkString(Array(app.utf8)), $0)] } ?? []
        } else {
            pairs = stride(from: 0, to: elements.count - 1, by: 2).map { (elements[$0], elements[$0 + 1]) }
        }
        return pairs.compactMap { name, value in
            guard case .bulkString(let bytes) = value, let usage = usage(bytes), let field = name.string else { return nil }
            if field == otherField { return (nil, usage) }
            return QuotaLedger.isValidName(field) ? (field, usage) : nil
        }
    }

    /// A row: 4 little-endian doubles, each a whole number from 0 to 2^53.
    static func usage(_ bytes: [UInt8]) -> HistoryMinute.Usage? {
        guard let values = LedgerWire.doubles(bytes, count: 4),
              values.allSatisfy({ $0 >= 0 && $0 <= 9_007_199_254_740_992 && $0 == $0.rounded() })
        else { return nil }
        let counts = values.map { Int($0) }
        return HistoryMinute.Usage(requests: counts[0], tokens: counts[1], inputTokens: counts[2], outputTokens: counts[3])
    }
}
