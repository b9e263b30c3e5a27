import Crypto

/// A Lua script run with `EVALSHA`, named by the SHA-1 of its source.
package struct RedisScript: Sendable, Hashable {
    /// A short name for logs and errors (e.g. the file name in `lua/`).
    package let name: String
    /// The exact source sent with `SCRIPT LOAD`.
    package let source: String
    /// The SHA-1 Redis uses to name the script.
    package let sha1: String

    /// Creates a script from its source.
    package init(name: String, source: String) {
        self.name = name
        self.source = source
        // SHA-1 names the script, as Redis does; it is not used for security.
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

extension RedisClient {
    /// Runs a script with `EVALSHA`; if Redis answers `NOSCRIPT` (restart, `SCRIPT FLUSH`, a new server, a
    /// failover), loads it with `SCRIPT LOAD` and runs it once more on the same node (the node of KEYS[1] in
    /// a cluster), so a lost script cache never surfaces as an error.
    ///
    /// Redis cost: one `EVALSHA` round trip; two more (`SCRIPT LOAD`, `EVALSHA`) after a script-cache loss.
    /// - Throws: `RedisError` (`.serverError` with the script's error text, `.scriptMissing` if it cannot be
    ///   loaded), or `CancellationError`.
    package func evalScript(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisReply {
        let command = RedisCommand(["EVALSHA", script.sha1, String(keys.count)] + keys + arguments)
        var reply = try await pipeline([command])[0]
        // A cluster may move the key to a node without the script between the load and the run: load again
        // there, a bounded number of times.
        var loads = 0
        while case .error(let message) = reply, message.hasPrefix("NOSCRIPT"), loads < 3 {
            loads += 1
            let loaded = try await pipeline([RedisCommand(["SCRIPT", "LOAD", script.source]), command])
            if case .error(let message) = loaded[0] {
                if message.hasPrefix("NOPERM") { throw RedisError.errorReply(message, to: "SCRIPT LOAD") }
                throw RedisError(code: .scriptMissing, message: "script \(script.name) could not be loaded: \(message)")
            }
            reply = loaded[1]
        }
        if case .error(let message) = reply { throw RedisError.errorReply(message, to: "EVALSHA (script \(script.name))") }
        return reply
    }

    /// Loads a script into Redis's script cache ahead of its first use (on every master of a cluster).
    ///
    /// Redis cost: one `SCRIPT LOAD` round trip per master.
    package func loadScript(_ script: RedisScript) async throws {
        for pool in try await router.masterPools() {
            if case .error(let message) = try await pool.run(RedisCommand(["SCRIPT", "LOAD", script.source]), deadline: router.deadline()) {
                if message.hasPrefix("NOPERM") { throw RedisError.errorReply(message, to: "SCRIPT LOAD") }
                throw RedisError(code: .scriptMissing, message: "script \(script.name) could not be loaded at \(pool.endpoint): \(message)")
            }
        }
    }
}
