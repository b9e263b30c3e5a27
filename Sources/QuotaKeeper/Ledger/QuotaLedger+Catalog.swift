import QuotaKeeperRedis

extension QuotaLedger {
    /// Every budget that has a ledger under this ledger's key prefix, sorted by name (`<model>@<region>`).
    ///
    /// Redis cost: `SCAN ... MATCH <prefix>{*}:ledger COUNT 1000` until the cursor returns to 0: one round trip
    /// per 1000 keys of the whole database; for operators, not hot paths.
    /// - Throws: `LedgerError` `.storeUnavailable` when Redis fails.
    public func listBudgets() async throws -> [BudgetID] {
        let pattern = Self.globEscaped(keyPrefix) + "{*}:ledger"
        var cursor = "0"
        var budgets = Set<BudgetID>()
        repeat {
            let reply: RedisReply
            do {
                reply = try await redis.send(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"])
            } catch let error as RedisError {
                throw LedgerError(code: .storeUnavailable, message: "SCAN for budgets: \(error.message)", underlying: error)
            }
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array else {
                throw LedgerError(code: .unexpectedReply, message: "SCAN answered \(reply)")
            }
            cursor = next
            for key in keys.compactMap(\.string) {
                if let budget = budgetID(ledgerKey: key) { budgets.insert(budget) }
            }
        } while cursor != "0"
        return budgets.sorted { $0.description < $1.description }
    }

    /// The budget whose ledger hash is `key` (`<prefix>{<model>@<region>}:ledger`), or nil for any other key.
    public func budgetID(ledgerKey key: String) -> BudgetID? {
        guard key.hasPrefix(keyPrefix + "{"), key.hasSuffix("}:ledger") else { return nil }
        let name = key.dropFirst(keyPrefix.count + 1).dropLast("}:ledger".count)
        guard let at = name.lastIndex(of: "@") else { return nil }
        let budget = BudgetID(model: String(name[..<at]), region: String(name[name.index(after: at)...]))
        return (try? budget.validate()) == nil ? nil : budget
    }

    /// `text` with the glob characters of `SCAN MATCH` (`* ? [ ] \`) escaped.
    static func globEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}
