import Foundation
import QuotaKeeperRedis

/// The Redis the integration tests use: `QUOTAKEEPER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
public enum TestRedis {
    /// The URL from the environment.
    public static var url: String {
        ProcessInfo.processInfo.environment["QUOTAKEEPER_TEST_REDIS_URL"] ?? "redis://127.0.0.1:6379"
    }

    /// A configuration for the test server with short timeouts.
    public static func configuration(commandTimeout: Duration = .seconds(2)) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url)
        configuration.timeouts.command = commandTimeout
        configuration.timeouts.connect = .seconds(2)
        return configuration
    }

    /// A hash tag unique to one test, e.g. `{qk-test-3F2A...}`, so every key of the test lands in one slot
    /// and no two tests (or runs) share keys.
    public static func uniqueTag(_ label: String = "t") -> String {
        "{qk-test-\(label)-\(UUID().uuidString.prefix(13))}"
    }

    /// Deletes every key starting with `prefix`, on every shard of a cluster (SCAN + UNLINK; never FLUSHALL).
    public static func deleteKeys(matching prefix: String, using client: RedisClient) async throws {
        try await client.unlinkKeys(matching: prefix + "*")
    }
}
