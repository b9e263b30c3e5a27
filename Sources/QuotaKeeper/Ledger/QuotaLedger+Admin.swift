import Foundation
import QuotaKeeperRedis

extension QuotaLedger {
    /// Seeds every configured budget that Redis does not have yet (existing ones are left as they are).
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` seed: TIME + HMGET + HSET) per budget.
    public func seedBudgets() async throws {
        for configuration in configurations.values { try await seed(configuration) }
    }

    /// Seeds one budget if Redis has no configuration for it.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` seed): HMGET, and TIME + HSET if absent.
    /// - Returns: whether it was written (false: it existed).
    @discardableResult
    public func seed(_ configuration: BudgetConfiguration) async throws -> Bool {
        try configuration.validate()
        let reply = try await configure(configuration.id, mode: "seed", configuration.scriptSettings)
        return reply.tag == "seeded"
    }

    /// Replaces a budget's configuration for the whole fleet (limits, windows, caps, breaker settings). Usage
    /// is kept; if the window geometry changes, what the old window counts moves into the newest bucket.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` replace): TIME + HMGET + HKEYS + HSET (+ HDEL).
    public func updateBudget(_ configuration: BudgetConfiguration) async throws {
        try configuration.validate()
        _ = try await configure(configuration.id, mode: "replace", configuration.scriptSettings)
    }

    /// Changes only the limits of a stored budget (nil removes a limit).
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` set): TIME + HMGET + HKEYS + HSET.
    public func updateLimits(_ limits: BudgetConfiguration.Limits, of budget: BudgetID) async throws {
        try BudgetConfiguration(id: budget, limits: limits).validate()
        _ = try await configure(budget, mode: "set", limits.scriptSettings)
    }

    /// Sets the share of every limit the ledger admits (lowered after unexpected throttles, raised again later).
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` set).
    /// - Parameter fraction: 0.01...1.
    public func setEffectiveCeiling(_ fraction: Double, of budget: BudgetID) async throws {
        guard (0.01...1).contains(fraction) else {
            throw LedgerError(code: .invalidArgument, message: "effective ceiling must be from 0.01 to 1, not \(fraction)")
        }
        _ = try await configure(budget, mode: "set", ["ceil", String(fraction)])
    }

    /// Lowers (`ceiling x factor`, not below `floor`) or raises (`ceiling + step`, not above `ceiling`) the
    /// effective ceiling in one atomic script call, so adjustments from several instances compose instead of
    /// overwriting each other.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_configure` adjust_ceiling): HGET + HSET.
    /// - Returns: the ceiling before and after (equal when it was already at the bound).
    public func adjustEffectiveCeiling(
        of budget: BudgetID, _ adjustment: CeilingAdjustment
    ) async throws -> (previous: Double, current: Double) {
        let arguments: [String]
        switch adjustment {
        case .lower(let factor, let floor):
            guard (0.01...1).contains(factor), (0.01...1).contains(floor) else {
                throw LedgerError(code: .invalidArgument, message: "ceiling factor and floor must be from 0.01 to 1, not \(factor), \(floor)")
            }
            arguments = ["lower", String(factor), String(floor)]
        case .raise(let step, let ceiling):
            guard (0...1).contains(step), (0.01...1).contains(ceiling) else {
                throw LedgerError(code: .invalidArgument, message: "ceiling step must be from 0 to 1 and the top from 0.01 to 1, not \(step), \(ceiling)")
            }
            arguments = ["raise", String(step), String(ceiling)]
        }
        let reply = try await configure(budget, mode: "adjust_ceiling", arguments)
        let fields = reply.array ?? []
        guard reply.tag == "ceiling", fields.count == 3, let previous = fields[1].string.flatMap(Double.init),
              let current = fields[2].string.flatMap(Double.init)
        else { throw Self.unexpected(reply, LedgerScripts.configure) }
        return (previous, current)
    }

    /// One atomic change of the effective ceiling (`adjustEffectiveCeiling`).
    public enum CeilingAdjustment: Sendable, Hashable {
        /// `ceiling x factor`, not below `floor`.
        case lower(factor: Double, floor: Double)
        /// `ceiling + step`, not above `ceiling`.
        case raise(step: Double, ceiling: Double)
    }

    /// Removes every key of a budget: ledger, leases, breaker sets and per-minute history.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_delete`: one DEL of 4 keys), `TIME`, then the history minutes of the
    /// longest retention (7 days) in `UNLINK`s of at most 1,000 keys each, in one round trip (11 commands).
    /// - Returns: keys removed (0 if the budget did not exist).
    @discardableResult
    public func deleteBudget(_ budget: BudgetID) async throws -> Int {
        let reply = try await evaluate(LedgerScripts.delete, budget, ["delete"], keys: keys(budget).readOrDelete)
        let removed = Int(reply.integers.count == 2 ? reply.integers[1] : 0)
        return removed + (try await deleteHistory(of: budget))
    }

    /// Clears a budget's usage (windows, app usage, in-flight leases) but keeps its configuration and breaker.
    /// Reservations made before settle without touching the new windows.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_delete` reset_usage): TIME + HMGET + HKEYS + HDEL + HSET + DEL.
    public func resetUsage(of budget: BudgetID) async throws {
        _ = try await run(LedgerScripts.delete, budget, ["reset_usage"], keys: keys(budget).readOrDelete)
    }

    /// The budget's configuration, usage per window and bucket, capped apps, leases and breaker, as stored now.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_read`: HMGET + TIME + 3 ZCOUNT, + one HMGET per ring that moved on and
    /// one per capped app), then the window's and the day's bucket slots, `HMGET`s of `statusSlotsPerCommand`
    /// fields in one pipeline (at most 2 x 1,201 fields); no call runs longer than 2 ms whatever the ring sizes.
    public func status(of budget: BudgetID) async throws -> BudgetStatus {
        let reply = try await run(LedgerScripts.read, budget, [], keys: keys(budget).readOrDelete)
        guard case .bulkString = reply, let json = reply.string else { throw Self.unexpected(reply, LedgerScripts.read) }
        var status: BudgetStatus
        do {
            status = try BudgetStatus.decode(json)
        } catch {
            throw LedgerError(code: .unexpectedReply, message: "ledger_read answered JSON this version cannot read: \(error)")
        }
        status.window.buckets = try await buckets(budget, status.window, counts: .requestsAndTokens)
        status.day.buckets = try await buckets(budget, status.day, counts: .tokens)
        return status
    }

    /// Slot fields per `HMGET` when `status(of:)` reads a ring's buckets.
    static let statusSlotsPerCommand = 200

    /// What a ring's two counters are: (requests, tokens) for the window, (tokens, unused) for the day.
    enum RingCounters { case requestsAndTokens, tokens }

    /// The ring's buckets holding usage as of its `current` bucket, oldest first, the current one always listed:
    /// the slots of the buckets before the stored head, read in chunks, then the stored head from `st`.
    private func buckets(
        _ budget: BudgetID, _ usage: BudgetStatus.WindowUsage, counts: RingCounters
    ) async throws -> [BudgetStatus.Bucket] {
        let ring = usage.slots
        let oldest = ring.current - ring.span + 1
        let beforeHead = Array(stride(from: oldest, to: min(ring.head, ring.current + 1), by: 1))
        let commands = stride(from: 0, to: beforeHead.count, by: Self.statusSlotsPerCommand).map { start in
            RedisCommand(["HMGET", ledgerKey(budget)] + beforeHead[start..<min(start + Self.statusSlotsPerCommand, beforeHead.count)]
                .map { ring.prefix + String($0 % ring.span) })
        }
        let replies: [RedisReply]
        do {
            replies = commands.isEmpty ? [] : try await redis.pipeline(commands)
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "ledger slots of \(budget): \(error.message)", underlying: error)
        }
        func bucket(_ index: Int64, _ first: Double, _ second: Double) -> BudgetStatus.Bucket {
            switch counts {
            case .requestsAndTokens: BudgetStatus.Bucket(startMilliseconds: index * usage.granularityMilliseconds, requests: Int(first), tokens: Int(second))
            case .tokens: BudgetStatus.Bucket(startMilliseconds: index * usage.granularityMilliseconds, requests: nil, tokens: Int(first))
            }
        }
        var result: [BudgetStatus.Bucket] = []
        for (index, value) in zip(beforeHead, replies.flatMap { $0.array ?? [] }) {
            guard case .bulkString(let bytes) = value, let slot = LedgerWire.doubles(bytes, count: 3),
                  slot[0] == Double(index), slot[1] != 0 || slot[2] != 0
            else { continue }   // empty, or stale (another bucket's)
            result.append(bucket(index, slot[1], slot[2]))
        }
        let head = ring.headCounts.count == 2 ? (ring.headCounts[0], ring.headCounts[1]) : (0, 0)
        if ring.head >= oldest, ring.head < ring.current, head.0 != 0 || head.1 != 0 {
            result.append(bucket(ring.head, head.0, head.1))
        }
        result.append(ring.head == ring.current ? bucket(ring.current, head.0, head.1) : bucket(ring.current, 0, 0))
        return result
    }

    /// Loads every ledger script into Redis's script cache (optional: scripts load on first use anyway).
    ///
    /// Redis cost: one `SCRIPT LOAD` per script.
    public func loadScripts() async throws {
        for script in LedgerScripts.all { try await redis.loadScript(script) }
    }

    private func configure(_ budget: BudgetID, mode: String, _ settings: [String]) async throws -> RedisReply {
        try await run(LedgerScripts.configure, budget, [mode] + settings, keys: keys(budget).configure)
    }
}
