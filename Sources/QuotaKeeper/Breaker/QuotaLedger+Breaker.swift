import QuotaKeeperRedis
import TimeLimit

/// Operator commands for a budget's fleet-wide circuit breaker. Outcomes are reported through
/// `Reservation.settle(usage:outcome:latency:)` and `release(outcome:latency:)`; the breaker check is part of
/// `reserve` (a refused call is a `.budgetExhausted` error with reason `.breakerOpen`).
extension QuotaLedger {
    /// The breaker's state and counters now.
    ///
    /// Redis cost: one `EVALSHA` (`ledger_read`).
    public func breakerStatus(of budget: BudgetID) async throws -> BreakerStatus {
        try await status(of: budget).breaker
    }

    /// Opens the breaker for every instance: all calls are refused until `duration` has passed (then it probes
    /// as half-open) or, with nil, until an operator closes it.
    ///
    /// Redis cost: one `EVALSHA` (`breaker_admin`): TIME + HMGET + HSET.
    public func forceOpenBreaker(of budget: BudgetID, for duration: Duration? = nil) async throws {
        if let duration, duration <= .zero {
            throw LedgerError(code: .invalidArgument, message: "force-open duration must be positive, not \(duration)")
        }
        try await breakerCommand(budget, ["force_open", String(duration?.millisecondsRoundedUp ?? 0)])
    }

    /// Closes the breaker now, clearing its failure window and probes (the opening count stays, so a relapse
    /// still backs off). Also ends `disabled`.
    ///
    /// Redis cost: one `EVALSHA` (`breaker_admin`): TIME + HMGET + HSET + DEL.
    public func closeBreaker(of budget: BudgetID) async throws {
        try await breakerCommand(budget, ["close"])
    }

    /// Disables the breaker: it never trips, outcomes are still counted (a dry run). `closeBreaker` ends it.
    ///
    /// Redis cost: one `EVALSHA` (`breaker_admin`).
    public func disableBreaker(of budget: BudgetID) async throws {
        try await breakerCommand(budget, ["disable"])
    }

    /// Closes the breaker and clears every counter, including the opening count.
    ///
    /// Redis cost: one `EVALSHA` (`breaker_admin`).
    public func resetBreaker(of budget: BudgetID) async throws {
        try await breakerCommand(budget, ["reset"])
    }

    private func breakerCommand(_ budget: BudgetID, _ arguments: [String]) async throws {
        let reply = try await run(LedgerScripts.breakerAdmin, budget, arguments, keys: keys(budget).breakerAdmin)
        guard reply.tag == "ok" else { throw Self.unexpected(reply, LedgerScripts.breakerAdmin) }
        logger.debug("breaker command", metadata: ["quotakeeper.budget": "\(budget)", "quotakeeper.command": "\(arguments[0])"])
    }
}
