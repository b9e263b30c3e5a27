import QuotaKeeperRedis

/// Who waits in a budget's waiting line right now (docs/ledger.md "Waiting line").
public struct WaitingLineStatus: Sendable, Hashable {
    /// The waiters of one priority class.
    public struct ClassLine: Sendable, Hashable {
        /// Live tickets (expired ones are left out).
        public var waiters: Int
        /// How long the oldest of them has waited (Redis time), nil when none waits.
        public var oldestWait: Duration?

        public init(waiters: Int, oldestWait: Duration? = nil) {
            self.waiters = waiters
            self.oldestWait = oldestWait
        }
    }

    public var interactive: ClassLine
    public var batch: ClassLine

    public subscript(priority: Priority) -> ClassLine { priority == .batch ? batch : interactive }
}

extension QuotaLedger {
    /// The budget's waiting line: live tickets per class and the oldest wait, as of Redis time `now`
    /// (`BudgetStatus.nowMilliseconds`).
    ///
    /// Redis cost: `ZRANGE` of the line (at most its capacity, 1000) and `ZRANGE` of live expiries.
    public func waitingLine(of budget: BudgetID, now: Int64) async throws -> WaitingLineStatus {
        try budget.validate()
        let keys = keys(budget)
        let members: RedisReply
        let live: RedisReply
        do {
            members = try await redis.send(["ZRANGE", keys.line, "0", "-1"])
            live = try await redis.send(["ZRANGE", keys.lineExpiry, String(now), "+inf", "BYSCORE"])
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "waiting line of budget \(budget): \(error.message)", underlying: error)
        }
        let liveIDs = Set((live.array ?? []).compactMap(\.string))
        var lines = [Priority.interactive: WaitingLineStatus.ClassLine(waiters: 0), .batch: .init(waiters: 0)]
        for member in (members.array ?? []).compactMap(\.string) {
            // `<class i|b>|<requests>|<tokens>|<arrival ms>|<id>` (lua/ledger_reserve.lua)
            let parts = member.split(separator: "|", maxSplits: 4, omittingEmptySubsequences: false)
            guard parts.count == 5, let arrival = Int64(parts[3]), liveIDs.contains(String(parts[4])) else { continue }
            let priority: Priority = parts[0] == "b" ? .batch : .interactive
            let waited = Duration.milliseconds(max(0, now - arrival))
            lines[priority]!.waiters += 1
            lines[priority]!.oldestWait = max(lines[priority]!.oldestWait ?? .zero, waited)
        }
        return WaitingLineStatus(interactive: lines[.interactive]!, batch: lines[.batch]!)
    }
}
