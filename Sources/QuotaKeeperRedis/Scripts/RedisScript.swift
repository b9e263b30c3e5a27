/// A Lua script run with `EVALSHA`, named by the SHA-1 of its source.
public struct RedisScript: Sendable, Hashable {
    /// A short name for logs and errors (e.g. the file name in `lua/`).
    public let name: String
    /// The exact source sent with `SCRIPT LOAD`.
    public let source: String
    /// The SHA-1 Redis uses to name the script.
    public let sha1: String

    /// Creates a script from its source.
    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha1 = SHA1.hexDigest(Array(source.utf8))
    }
}

extension RedisClient {
    /// Runs a script with `EVALSHA`; if Redis answers `NOSCRIPT` (restart, `SCRIPT FLUSH`, a new server),
    /// loads it with `SCRIPT LOAD` and runs it once more, so a lost script cache never surfaces as an error.
    ///
    /// Redis cost: one `EVALSHA` round trip; two more (`SCRIPT LOAD`, `EVALSHA`) after a script-cache loss.
    /// - Throws: `RedisError` (`.serverError` with the script's error text, `.scriptMissing` if it cannot be
    ///   loaded), or `CancellationError`.
    public func evalScript(_ script: RedisScript, keys: [String], arguments: [String]) async throws -> RedisReply {
        let command = RedisCommand(["EVALSHA", script.sha1, String(keys.count)] + keys + arguments)
        let reply = try await pipeline([command])[0]
        guard case .error(let message) = reply else { return reply }
        guard message.hasPrefix("NOSCRIPT") else { throw RedisError.errorReply(message, to: "EVALSHA (script \(script.name))") }
        let loaded = try await pipeline([RedisCommand(["SCRIPT", "LOAD", script.source]), command])
        if case .error(let message) = loaded[0] {
            if message.hasPrefix("NOPERM") { throw RedisError.errorReply(message, to: "SCRIPT LOAD") }
            throw RedisError(code: .scriptMissing, message: "script \(script.name) could not be loaded: \(message)")
        }
        if case .error(let message) = loaded[1] { throw RedisError.errorReply(message, to: "EVALSHA (script \(script.name))") }
        return loaded[1]
    }

    /// Loads a script into Redis's script cache ahead of its first use.
    ///
    /// Redis cost: one `SCRIPT LOAD` round trip.
    public func loadScript(_ script: RedisScript) async throws {
        _ = try await send(["SCRIPT", "LOAD", script.source])
    }
}
