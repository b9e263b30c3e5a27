import TimeLimit

/// Usage an instance admitted on its own while Redis was unreachable, to be charged to the ledger later.
public struct UsageReplay: Sendable, Hashable {
    /// Identifies this entry on every retry, so a lost reply never charges it twice.
    public var id: String
    public var budget: BudgetID
    public var app: String
    public var requests: Int
    /// What Bedrock charged: input + cache-write + output x burndown.
    public var tokens: Int
    /// Input (cache writes included) and output tokens as Bedrock reported them, for the history.
    public var inputTokens: Int
    public var outputTokens: Int

    public init(id: String, budget: BudgetID, app: String, requests: Int, tokens: Int, inputTokens: Int = 0, outputTokens: Int = 0) {
        self.id = id
        self.budget = budget
        self.app = app
        self.requests = requests
        self.tokens = tokens
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}

extension QuotaLedger {
    /// Charges usage admitted without the ledger (call path policy `failOpen`) to the newest buckets of the
    /// budget's rings and to this minute's history, exactly once per `replay.id`.
    ///
    /// Redis cost: `TIME` (the history minute, from Redis's clock) + one `EVALSHA` (`ledger_replay`): SET NX + TIME +
    /// HMGET + HSET + the history's HMGET + HSET.
    /// - Parameters:
    ///   - replay: the usage and its id.
    ///   - rememberFor: how long the id is remembered against a second replay.
    /// - Returns: `true` if charged now, `false` if this id was already charged.
    /// - Throws: `LedgerError` (`.invalidArgument`, `.unknownBudget`, `.storeUnavailable`).
    @discardableResult
    public func replay(_ replay: UsageReplay, rememberFor: Duration = .seconds(86_400)) async throws -> Bool {
        try Self.validateName(replay.id, "replay id")
        try Self.validateName(replay.app, "app")
        let arguments = [
            replay.id, replay.app, String(replay.requests), String(replay.tokens), String(rememberFor.millisecondsRoundedUp),
            String(replay.inputTokens), String(replay.outputTokens),
        ]
        let minute = try await redisMilliseconds() / 60_000
        let keys = keys(replay.budget)
        let reply = try await run(
            LedgerScripts.replay, replay.budget, arguments,
            keys: [keys.ledger, keys.replayed(replay.id), historyKey(replay.budget, minute: minute)])
        switch reply.tag {
        case "replayed": return true
        case "duplicate": return false
        default: throw Self.unexpected(reply, LedgerScripts.replay)
        }
    }
}
