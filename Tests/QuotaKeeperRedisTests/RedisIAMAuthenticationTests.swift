import AWSAuth
import Foundation
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

/// ElastiCache IAM authentication through the connection's handshake, against a real redis-server whose user
/// accepts any password (`nopass`: redis-server cannot check SigV4; the token itself is checked against
/// botocore in AWSAuthTests).
@Suite("Redis IAM authentication")
struct RedisIAMAuthenticationTests {
    final class CountingCredentials: AWSCredentialsProvider {
        let calls = NSLock()
        nonisolated(unsafe) var count = 0
        let failing: Bool
        init(failing: Bool = false) { self.failing = failing }
        func credentials() async throws -> AWSCredentials {
            calls.withLock { count += 1 }
            if failing { throw CredentialsError(code: .accessDenied, message: "STS answered HTTP 403") }
            return AWSCredentials(accessKeyId: "ASIAREDIS", secretAccessKey: "redis-secret", sessionToken: "redis-token",
                                  expiration: Date().addingTimeInterval(3600))
        }
    }

    @Test("?iam=true parses user id, cache, Region and serverless; a password or a missing cache is refused")
    func url() throws {
        let configuration = try RedisConfiguration(url: "redis://quota-app@127.0.0.1:6380?iam=true&cache=quota-ledger&region=eu-west-1&serverless=true")
        guard case .iam(let iam) = configuration.auth else {
            Issue.record("not IAM")
            return
        }
        #expect(iam.token.userID == "quota-app")
        #expect(iam.token.cacheName == "quota-ledger")
        #expect(iam.token.region == "eu-west-1")
        #expect(iam.token.serverless)
        #expect(configuration.password == nil)
        for bad in ["redis://quota-app:pw@h:6379?iam=true&cache=c&region=r", "redis://h:6379?iam=true&cache=c&region=r",
                    "redis://quota-app@h:6379?iam=true&region=r"] {
            #expect(throws: RedisError.self, "\(bad)") { try RedisConfiguration(url: bad) }
        }
    }

    @Test("connections AUTH as the IAM user with a token from the chain, and AUTH again once due")
    func authenticatesAndReauthenticates() async throws {
        let server = try await RedisServerProcess()
        let admin = RedisClient(configuration: try RedisConfiguration(url: server.url()))
        _ = try await admin.send(["ACL", "SETUSER", "quota-app", "on", "nopass", "~*", "+@all"])
        _ = try await admin.send(["ACL", "SETUSER", "default", "off"])  // only the IAM user may connect
        await admin.shutdown()

        let credentials = CountingCredentials()
        var configuration = try RedisConfiguration(url: server.url())
        configuration.pool.connections = 1
        var iam = RedisConfiguration.IAMAuthentication(
            token: ElastiCacheIAMToken(userID: "quota-app", cacheName: "quota-ledger", region: "us-east-1"), credentials: credentials)
        iam.reauthenticateAfter = .milliseconds(300)
        configuration.auth = .iam(iam)
        let client = RedisClient(configuration: configuration)
        #expect(try await client.send(["ACL", "WHOAMI"]).string == "quota-app")
        func authCalls() async throws -> Int {
            let info = try await client.send(["INFO", "commandstats"]).string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_auth:") } ?? ""
            return Int(line.split(separator: ",").first?.split(separator: "=").last ?? "0") ?? 0
        }
        let first = try await authCalls()
        #expect(first == 1)
        try await Task.sleep(for: .milliseconds(400))
        #expect(try await authCalls() == first + 1)  // re-authenticated before this command
        #expect(credentials.calls.withLock { credentials.count } == 1)  // the cached credentials, a new token
        await client.shutdown()

        var failing = configuration
        failing.auth = .iam(RedisConfiguration.IAMAuthentication(token: iam.token, credentials: CountingCredentials(failing: true)))
        failing.timeouts.command = .milliseconds(500)
        let refused = RedisClient(configuration: failing)
        let error = try await #require(throws: RedisError.self) { try await refused.send("PING") }
        #expect(error.message.contains("STS answered HTTP 403") || error.code == .timeout, "\(error)")
        await refused.shutdown()
        await server.stop()
    }
}
