extension RedisClient {
    /// Every key matching a `SCAN MATCH` glob, from every master of a cluster (the one node otherwise).
    ///
    /// Keys created or moved between shards during the scan may be missing or appear once (the result has
    /// no duplicates); keys that exist throughout are always in it.
    ///
    /// Redis cost: `SCAN cursor MATCH pattern COUNT count` per master until its cursor returns to 0: one round
    /// trip per `count` keys of the whole database; for operators, not hot paths.
    /// - Throws: `RedisError` when a master cannot be scanned.
    package func scan(match pattern: String, count: Int = 1000) async throws -> [String] {
        var keys = Set<String>()
        for pool in try await router.masterPools() {
            var cursor = "0"
            repeat {
                try Task.checkCancellation()
                let reply = try await pool.run(
                    RedisCommand(["SCAN", cursor, "MATCH", pattern, "COUNT", String(max(1, count))]), deadline: router.deadline())
                if case .error(let message) = reply {
                    throw RedisError.errorReply(message, to: "SCAN at \(pool.endpoint)")
                }
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let found = parts[1].array else {
                    throw RedisError(code: .protocolError, message: "SCAN at \(pool.endpoint) answered an unexpected reply")
                }
                cursor = next
                for key in found { if let key = key.string { keys.insert(key) } }
            } while cursor != "0"
        }
        return keys.sorted()
    }

    /// Deletes every key matching a `SCAN MATCH` glob on every master (`scan(match:)`, then `UNLINK` per key
    /// in pipelines of 500, so keys of different slots never share a command); never `FLUSHALL`.
    /// - Returns: how many keys were found.
    @discardableResult
    package func unlinkKeys(matching pattern: String) async throws -> Int {
        let keys = try await scan(match: pattern)
        for start in stride(from: 0, to: keys.count, by: 500) {
            _ = try await pipeline(keys[start..<min(keys.count, start + 500)].map { RedisCommand(["UNLINK", $0]) })
        }
        return keys.count
    }
}
