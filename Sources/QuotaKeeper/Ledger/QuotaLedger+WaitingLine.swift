import Synchronization
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
    /// Waiters are the callers holding a ticket and those booked for a later time whose time has not come.
    ///
    /// Redis cost: `HGETALL` of the line's tickets and bookings (at most its capacity, 1000, and three per app)
    /// and `ZRANGE` of live expiries.
    public func waitingLine(of budget: BudgetID, now: Int64) async throws -> WaitingLineStatus {
        try budget.validate()
        let keys = keys(budget)
        let members: RedisReply
        let live: RedisReply
        do {
            members = try await redis.send(["HVALS", keys.lineTickets])
            live = try await redis.send(["ZRANGE", keys.lineExpiry, String(now), "+inf", "BYSCORE"])
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "waiting line of budget \(budget): \(error.message)", underlying: error)
        }
        let liveIDs = Set((live.array ?? []).compactMap(\.string))
        var lines = [Priority.interactive: WaitingLineStatus.ClassLine(waiters: 0), .batch: .init(waiters: 0)]
        for member in (members.array ?? []).compactMap(\.string) {   // (the line's clocks' values do not parse)
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

/// What this process last heard of when an app's next caller of a class would get its turn in a budget's
/// line: a waiting caller the ledger refused because its turn comes after its wait (or that the limits will
/// have room only then) learns that time, and until a later answer says otherwise (a ticket taken, an
/// admission) the app's next callers of the class whose wait ends before it are refused here, without a round
/// trip: their tag in the line would be the same or later, so their turn is no earlier. In a lasting overload
/// most of the callers the line cannot serve are refused this way. The turn errs late only when tickets ahead
/// leave the line early (a cancelled or dead waiter), and then only until it passes.
final class LineTurns: Sendable {
    struct Key: Hashable, Sendable {
        var budget: BudgetID
        var app: String
        var priority: Priority
    }

    /// The denial that taught it and the turn it names (this process's clock).
    private let turns = Mutex<[Key: (denial: Denial, turn: ContinuousClock.Instant)]>([:])

    /// The denial to refuse a caller whose wait ends at `deadline` with (its `retryAfter` counted from `now`),
    /// or nil when it may ask the ledger (the known turn is not after its wait).
    func refusal(_ key: Key, deadline: ContinuousClock.Instant, now: ContinuousClock.Instant) -> Denial? {
        turns.withLock { turns in
            guard let known = turns[key] else { return nil }
            guard known.turn > now else {
                turns[key] = nil
                return nil
            }
            guard known.turn > deadline else { return nil }
            var denial = known.denial
            denial.retryAfter = known.turn - now
            return denial
        }
    }

    /// Remembers that the ledger refused a waiting caller of `key` whose turn comes at `turn`.
    func learn(_ key: Key, _ denial: Denial, turn: ContinuousClock.Instant) {
        turns.withLock { turns in
            if turns.count >= 10_000 { turns.removeAll() }   // bounded: one entry per budget, app and class in use
            turns[key] = (denial, turn)
        }
    }

    /// A caller of `key` was admitted, or got a ticket whose answer named no next turn: nothing is known. (An
    /// admission forgets even in a lasting overload, where the next caller's turn may still be late: keeping it
    /// halved the callers Redis refuses there, but a turn inflated by a stalled process then refused callers here
    /// that the line would have served: docs/benchmarks.md, "Waiting line, session 5".)
    func forget(_ key: Key) {
        turns.withLock { turns in _ = turns.removeValue(forKey: key) }
    }
}
