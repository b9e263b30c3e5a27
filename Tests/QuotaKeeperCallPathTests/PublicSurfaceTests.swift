// Imports QuotaKeeper alone, as a service does: the README's connection examples compile with what the
// umbrella module re-exports (RedisClient, RedisConfiguration, RedisError, ElastiCacheIAMToken), and nothing
// of the Redis layer's raw API (send, RedisReply, evalScript) is needed for them.
import QuotaKeeper
import Testing

@Suite("QuotaKeeper's public surface, as a service imports it")
struct PublicSurfaceTests {
    @Test("the README's Redis configuration, TLS, IAM and error handling need nothing but `import QuotaKeeper`")
    func readmeConnectionExamples() async throws {
        var redis = try RedisConfiguration(
            url: "rediss://quota-app@master.quota-ledger.abc123.use1.cache.amazonaws.com:6379?iam=true&cache=quota-ledger&region=us-east-1")
        redis.timeouts.command = .milliseconds(250)
        redis.tls?.caFile = "/etc/ssl/private-ca.pem"
        redis.auth = .iam(.init(token: ElastiCacheIAMToken(userID: "quota-app", cacheName: "quota-ledger", region: "us-east-1")))
        redis.cluster = .off
        #expect(redis.tls?.verification == .full, "TLS verification is on by default")
        guard case .iam(let iam) = redis.auth else { Issue.record("auth is not IAM"); return }
        #expect(iam.token.cacheName == "quota-ledger")

        let refused = #expect(throws: RedisError.self) { try RedisConfiguration(url: "http://localhost") }
        #expect(refused?.code == .invalidURL)

        let client = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:1"))
        #expect(client.configuration.endpoint.description == "127.0.0.1:1")
        await client.shutdown()
    }
}
