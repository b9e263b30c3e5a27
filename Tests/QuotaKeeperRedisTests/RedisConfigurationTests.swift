import QuotaKeeperRedis
import Testing

@Suite("Redis URLs")
struct RedisConfigurationTests {
    @Test("redis:// with user, password, port and database")
    func fullTCPURL() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:s%40cret@cache.internal:6380/3")
        #expect(configuration.endpoint == .tcp(host: "cache.internal", port: 6380))
        #expect(configuration.username == "alice")
        #expect(configuration.password == "s@cret")
        #expect(configuration.database == 3)
    }

    @Test("redis:// defaults: port 6379, database 0, no credentials")
    func defaults() throws {
        let configuration = try RedisConfiguration(url: "redis://127.0.0.1")
        #expect(configuration.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(configuration.username == nil)
        #expect(configuration.password == nil)
        #expect(configuration.database == 0)
    }

    @Test("password only, IPv6 host")
    func passwordOnlyIPv6() throws {
        let configuration = try RedisConfiguration(url: "redis://:pw@[::1]:7000")
        #expect(configuration.endpoint == .tcp(host: "::1", port: 7000))
        #expect(configuration.endpoint.description == "[::1]:7000")
        #expect(configuration.username == nil)
        #expect(configuration.password == "pw")
    }

    @Test("rediss:// turns TLS on with verification against the system trust store; redis:// leaves it off")
    func tlsURL() throws {
        let configuration = try RedisConfiguration(url: "rediss://app:pw@cache.example.com:6380/1")
        #expect(configuration.endpoint == .tcp(host: "cache.example.com", port: 6380))
        #expect(configuration.tls == RedisConfiguration.TLS())
        #expect(configuration.tls?.verification == .full && configuration.tls?.caFile == nil)
        #expect(configuration.username == "app" && configuration.database == 1)
        #expect(try RedisConfiguration(url: "redis://cache.example.com").tls == nil)
    }

    @Test("TLS files from QUOTAKEEPER_REDIS_TLS_CA, _CERT and _KEY fill only what is not set")
    func tlsEnvironment() {
        var tls = RedisConfiguration.TLS(caFile: "/explicit/ca.pem")
        tls.fillFromEnvironment([
            "QUOTAKEEPER_REDIS_TLS_CA": "/env/ca.pem", "QUOTAKEEPER_REDIS_TLS_CERT": "/env/client.pem",
            "QUOTAKEEPER_REDIS_TLS_KEY": "/env/client.key",
        ])
        #expect(tls.caFile == "/explicit/ca.pem")
        #expect(tls.certificateFile == "/env/client.pem")
        #expect(tls.privateKeyFile == "/env/client.key")
    }

    @Test("init(url:environment:) (the CLI's and the fleet's parsing) takes TLS files from the environment for rediss:// only")
    func urlWithEnvironment() throws {
        let environment = ["QUOTAKEEPER_REDIS_TLS_CA": "/env/ca.pem", "QUOTAKEEPER_REDIS_TLS_CERT": "/env/client.pem"]
        let secure = try RedisConfiguration(url: "rediss://cache.example:6380", environment: environment)
        #expect(secure.tls?.caFile == "/env/ca.pem")
        #expect(secure.tls?.certificateFile == "/env/client.pem")
        #expect(secure.tls?.verification == .full)
        #expect(try RedisConfiguration(url: "redis://cache.example:6379", environment: environment).tls == nil)
    }

    @Test("unix:// socket with database and credentials")
    func unixSocket() throws {
        let configuration = try RedisConfiguration(url: "unix:///var/run/redis.sock?db=2&user=bob&password=pw")
        #expect(configuration.endpoint == .unixSocket(path: "/var/run/redis.sock"))
        #expect(configuration.database == 2)
        #expect(configuration.username == "bob")
        #expect(configuration.password == "pw")
    }

    @Test(
        "malformed URLs are refused with .invalidURL naming the problem",
        arguments: [
            ("http://localhost", "unsupported scheme"),
            ("redis://", "missing host"),
            ("redis://localhost:0", "out of range"),
            ("redis://localhost/abc", "not a non-negative integer"),
            ("redis://localhost/-1", "not a non-negative integer"),
            ("unix://", "socket path"),
            ("unix:///tmp/r.sock?db=x", "not a non-negative integer"),
            ("rediss://", "missing host"),
            ("not a url at all", "expected redis://"),
        ])
    func malformed(url: String, expected: String) {
        do {
            _ = try RedisConfiguration(url: url)
            Issue.record("\(url) was accepted")
        } catch {
            #expect(error.code == .invalidURL)
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("error messages never echo the password")
    func passwordRedacted() {
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://u:topsecret@host/notanumber") }
        do {
            _ = try RedisConfiguration(url: "redis://u:topsecret@host/notanumber")
        } catch {
            #expect(!error.message.contains("topsecret"))
            #expect(error.message.contains("***"))
        }
    }
}
