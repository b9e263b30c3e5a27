extension QuotaLedger {
    /// Asks the fleet-wide retry budget of `target` for one retry, reporting `unreportedCalls` first attempts
    /// made since this instance's last request; true when the retry may go ahead (it is then counted).
    ///
    /// Redis cost: one `EVALSHA` (`retry_budget`).
    func permitRetry(
        on target: BudgetID, unreportedCalls: Int, settings: CallPathConfiguration.RetryBudget
    ) async throws -> Bool {
        let wire = LedgerWire.RetryBudgetArguments(unreportedCalls: unreportedCalls, settings: settings)
        let reply = try await run(LedgerScripts.retryBudget, target, wire.arguments, keys: wire.keys(keys(target)))
        return try LedgerWire.RetryBudgetReply(reply).permitted
    }
}
