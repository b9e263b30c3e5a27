import Foundation
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

/// `rediss://` against TLS-only redis-server processes with certificates made by `openssl` for each test.
@Suite("Redis over TLS against private TLS servers")
struct RedisTLSTests {
    private func client(
        _ url: String, commandTimeout: Duration = .seconds(1), tls configure: (inout RedisConfiguration.TLS) -> Void = { _ in }
    ) throws -> RedisClient {
        var configuration = try RedisConfiguration(url: url)
        configuration.timeouts.command = commandTimeout
        configuration.timeouts.connect = .milliseconds(500)
        configuration.reconnect.initialBackoff = .milliseconds(20)
        configuration.reconnect.maximumBackoff = .milliseconds(200)
        if configuration.tls != nil { configure(&configuration.tls!) }
        return RedisClient(configuration: configuration)
    }

    /// The `RedisError` the first `PING` fails with, and how long it took.
    private func failure(of client: RedisClient) async throws -> (RedisError, Duration) {
        let started = ContinuousClock.now
        let error = try await #require(throws: RedisError.self) { try await client.send("PING") }
        await client.shutdown()
        return (error, ContinuousClock.now - started)
    }

    @Test("a CA file: commands, scripts and binary replies over TLS, by IP address and by host name")
    func caFile() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates))
        for host in ["127.0.0.1", "localhost"] {
            let redis = try client(server.url(host: host)) { $0.caFile = certificates.caFile }
            let key = TestRedis.uniqueTag("tls") + ":k"
            let value = (0..<70_000).map { UInt8(truncatingIfNeeded: $0) }  // several TLS records each way
            _ = try await redis.send(RedisCommand(bytes: [Array("SET".utf8), Array(key.utf8), value]))
            #expect(try await redis.send(["GET", key]) == .bulkString(value))
            let script = RedisScript(name: "test_tls_echo", source: "return ARGV[1]")
            #expect(try await redis.evalScript(script, keys: [], arguments: [host]).string == host)
            await redis.shutdown()
        }
    }

    @Test("the CA file from QUOTAKEEPER_REDIS_TLS_CA; set values win over the environment")
    func caFromEnvironment() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates))
        let environment = [RedisConfiguration.TLS.caFileVariable: certificates.caFile]
        let redis = try client(server.url()) { $0.fillFromEnvironment(environment) }
        #expect(try await redis.send("PING") == .status("PONG"))
        await redis.shutdown()

        var explicit = RedisConfiguration.TLS(caFile: certificates.untrustedCAFile)
        explicit.fillFromEnvironment(environment)
        #expect(explicit.caFile == certificates.untrustedCAFile)
    }

    @Test("an untrusted certificate is refused with .tlsCertificateUntrusted (system store and another CA)")
    func untrusted() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates))
        let (systemStore, elapsed) = try await failure(of: try client(server.url()))
        #expect(systemStore.code == .tlsCertificateUntrusted, "\(systemStore)")
        #expect(systemStore.message.contains("127.0.0.1:\(server.port)") && systemStore.message.contains("--redis-tls-ca"))
        #expect(elapsed < .seconds(1), "refused at once, not after the command timeout; took \(elapsed)")

        let (otherCA, _) = try await failure(of: try client(server.url()) { $0.caFile = certificates.untrustedCAFile })
        #expect(otherCA.code == .tlsCertificateUntrusted, "\(otherCA)")
    }

    @Test("a trusted certificate for another host is refused with .tlsHostNameMismatch (IP address and SNI name)")
    func hostMismatch() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(
            listener: .tls(certificates, certificate: certificates.otherHostCertificate, key: certificates.otherHostKey))
        for host in ["127.0.0.1", "localhost"] {
            let (error, _) = try await failure(of: try client(server.url(host: host)) { $0.caFile = certificates.caFile })
            #expect(error.code == .tlsHostNameMismatch, "\(error)")
            #expect(error.message.contains("'\(host)'"))
        }
        let named = try client(server.url()) {
            $0.caFile = certificates.caFile
            $0.serverName = "elsewhere.example"
        }
        #expect(try await named.send("PING") == .status("PONG"), "the name the certificate was issued for is accepted")
        await named.shutdown()
    }

    @Test("verification can be turned off only explicitly (.dangerouslyDisabled)")
    func verificationDisabled() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(
            listener: .tls(certificates, certificate: certificates.otherHostCertificate, key: certificates.otherHostKey))
        let redis = try client(server.url()) { $0.verification = .dangerouslyDisabled }
        #expect(try await redis.send("PING") == .status("PONG"))
        await redis.shutdown()
        #expect(try RedisConfiguration(url: server.url()).tls?.verification == .full, "rediss:// verifies by default")
    }

    @Test("mutual TLS: the client certificate is accepted; without one the server refuses (.tlsHandshakeFailed)")
    func mutualTLS() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates, requireClientCertificates: true))
        let withCertificate = try client(server.url()) {
            $0.caFile = certificates.caFile
            $0.certificateFile = certificates.clientCertificate
            $0.privateKeyFile = certificates.clientKey
        }
        #expect(try await withCertificate.send("PING") == .status("PONG"))
        await withCertificate.shutdown()

        let (refused, _) = try await failure(of: try client(server.url()) { $0.caFile = certificates.caFile })
        #expect(refused.code == .tlsHandshakeFailed, "\(refused)")
        #expect(refused.message.contains("--redis-tls-cert"), "\(refused)")

        let (halfPair, _) = try await failure(of: try client(server.url()) {
            $0.caFile = certificates.caFile
            $0.certificateFile = certificates.clientCertificate
        })
        #expect(halfPair.code == .tlsConfigurationInvalid, "\(halfPair)")
        let (missingFile, _) = try await failure(of: try client(server.url()) { $0.caFile = "/nonexistent/ca.crt" })
        #expect(missingFile.code == .tlsConfigurationInvalid && missingFile.message.contains("/nonexistent/ca.crt"), "\(missingFile)")
    }

    @Test("plaintext to a TLS port is .tlsRequired, TLS to a plaintext port .tlsHandshakeFailed, both within the connect timeout")
    func wrongProtocol() async throws {
        let certificates = try await TestCertificates.make()
        let tlsServer = try await RedisServerProcess(listener: .tls(certificates))
        let (plaintext, plaintextElapsed) = try await failure(
            of: try client("redis://127.0.0.1:\(tlsServer.port)", commandTimeout: .seconds(5)))
        #expect(plaintext.code == .tlsRequired, "\(plaintext)")
        #expect(plaintext.message.contains("rediss://"))
        #expect(plaintextElapsed < .seconds(2), "connect timeout 500 ms (+ backoffs), not the 5 s command timeout; took \(plaintextElapsed)")

        let plainServer = try await RedisServerProcess()
        let (tls, tlsElapsed) = try await failure(
            of: try client("rediss://127.0.0.1:\(plainServer.port)", commandTimeout: .seconds(5)) { $0.caFile = certificates.caFile })
        #expect(tls.code == .tlsHandshakeFailed, "\(tls)")
        #expect(tls.message.contains("redis://"), "\(tls)")
        #expect(tlsElapsed < .seconds(2), "took \(tlsElapsed)")
    }

    @Test("CLIENT KILL under 64 concurrent callers over TLS: only written commands fail, as .connectionLostAfterWrite")
    func clientKillUnderLoad() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates))
        let redis = try client(server.url(), commandTimeout: .seconds(2)) { $0.caFile = certificates.caFile }
        let admin = try client(server.url()) { $0.caFile = certificates.caFile }
        try await RedisFailureTests.killConnections(under: redis, using: admin)
        await redis.shutdown()
        await admin.shutdown()
    }

    @Test("a TLS server killed and restarted: the pool reconnects over TLS; a killed idle connection loses no command")
    func reconnect() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates))
        let redis = try client(server.url()) { $0.caFile = certificates.caFile }
        let admin = try client(server.url()) { $0.caFile = certificates.caFile }
        _ = try await redis.pipeline([RedisCommand(["PING"]), RedisCommand(["PING"])])
        #expect(try await admin.send(["CLIENT", "KILL", "TYPE", "normal"]).integer ?? 0 >= 2)
        #expect(try await redis.send("PING") == .status("PONG"), "the killed idle connection's command went over a new one")
        await admin.shutdown()

        await server.stop()
        let error = try await #require(throws: RedisError.self) { try await redis.send("PING") }
        #expect([.connectionClosed, .connectionRefused].contains(error.code), "\(error)")
        try await server.start()
        let recovered = await eventually { (try? await redis.send("PING")) == .status("PONG") }
        #expect(recovered)
        await redis.shutdown()
    }
}
