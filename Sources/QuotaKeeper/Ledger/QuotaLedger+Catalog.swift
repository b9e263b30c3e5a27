import QuotaKeeperRedis

extension QuotaLedger {
    /// Every budget that has a ledger under this ledger's key prefix, sorted by name (`<model>@<region>`);
    /// on a Redis Cluster, from every shard.
    ///
    /// Redis cost: `SCAN ... MATCH <prefix>{*}:ledger COUNT 1000` per master until its cursor returns to 0:
    /// one round trip per 1000 keys of the whole database; for operators, not hot paths.
    /// - Throws: `LedgerError` `.storeUnavailable` when Redis fails.
    public func listBudgets() async throws -> [BudgetID] {
        let keys: [String]
        do {
            keys = try await redis.scan(match: Self.globEscaped(keyPrefix) + "{*}:ledger")
        } catch let error as RedisError {
            throw LedgerError(code: .storeUnavailable, message: "SCAN for budgets: \(error.message)", underlying: error)
        }
        return Set(keys.compactMap { budgetID(ledgerKey: $0) }).sorted { $0.description < $1.description }
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
