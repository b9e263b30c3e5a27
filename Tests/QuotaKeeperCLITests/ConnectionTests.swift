import Foundation
import QuotaKeeperTestSupport
import Testing

@Suite("quotakeeper connection failures and usage errors")
struct ConnectionTests {
    @Test("Redis down: exit 4 with one line naming the address; JSON with --json")
    func redisDown() async throws {
        let port = try RedisServerProcess.freePort()  // nothing listens there
        let started = ContinuousClock.now
        let run = try await CLIProcess.run(["status", "--redis-url", "redis://127.0.0.1:\(port)", "--connect-timeout", "1s"])
        #expect(run.status == 4)
        #expect(run.stderr.hasPrefix("quotakeeper: error: Redis unavailable"))
        #expect(run.stderr.contains("127.0.0.1:\(port)"))
        #expect(run.stderr.split(separator: "\n").count == 1)
        #expect(ContinuousClock.now - started < .seconds(10))
        let json = try await CLIProcess.run(["budget", "list", "--json"], environment: ["QUOTAKEEPER_REDIS_URL": "redis://127.0.0.1:\(port)"])
        #expect(json.status == 4)
        #expect(try json.jsonError["code"] as? String == "redis_unavailable")
        #expect(json.stdout.isEmpty)
    }

    @Test("Redis paused (SIGSTOP): exit 4 after the timeouts, no hang")
    func redisPaused() async throws {
        let server = try await RedisServerProcess()
        server.pause()
        let started = ContinuousClock.now
        let run = try await CLIProcess.run(["status", "--json", "--redis-url", server.url(), "--connect-timeout", "300ms"])
        server.resume()
        #expect(run.status == 4)
        #expect(try run.jsonError["code"] as? String == "redis_unavailable")
        // Either the handshake's read timed out (connect timeout) or the command's deadline passed first.
        let message = try run.jsonError["message"] as? String ?? ""
        #expect(message.contains("127.0.0.1:\(server.port)"), "\(message)")
        #expect(message.contains("did not answer within") || message.contains("timed out"), "\(message)")
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test("rediss://: the CA from --redis-tls-ca or QUOTAKEEPER_REDIS_TLS_CA; an untrusted server is exit 4; TLS options need rediss://")
    func tls() async throws {
        let certificates = try await TestCertificates.make()
        let server = try await RedisServerProcess(listener: .tls(certificates, requireClientCertificates: true))
        let list = ["budget", "list", "--prefix", "qk-cli-tls:", "--redis-url", server.url()]
        let client = ["--redis-tls-cert", certificates.clientCertificate, "--redis-tls-key", certificates.clientKey]
        let byOption = try await CLIProcess.run(list + ["--redis-tls-ca", certificates.caFile] + client)
        #expect(byOption.status == 0, "\(byOption.stderr)")
        #expect(byOption.stdout.contains("no budgets under prefix 'qk-cli-tls:'"))
        let byEnvironment = try await CLIProcess.run(list, environment: [
            "QUOTAKEEPER_REDIS_TLS_CA": certificates.caFile, "QUOTAKEEPER_REDIS_TLS_CERT": certificates.clientCertificate,
            "QUOTAKEEPER_REDIS_TLS_KEY": certificates.clientKey,
        ])
        #expect(byEnvironment.status == 0, "\(byEnvironment.stderr)")
        let untrusted = try await CLIProcess.run(list + ["--json"] + client)
        #expect(untrusted.status == 4)
        #expect((try untrusted.jsonError["message"] as? String ?? "").contains("not trusted"), "\(untrusted.stderr)")
        let missingCA = try await CLIProcess.run(list + ["--redis-tls-ca", "/nonexistent/ca.pem"] + client)
        #expect(missingCA.status == 1, "\(missingCA.stderr)")
        #expect(missingCA.stderr.contains("/nonexistent/ca.pem"))
        let plaintextURL = try await CLIProcess.run(["budget", "list", "--redis-url", "redis://127.0.0.1:\(server.port)", "--redis-tls-ca", certificates.caFile])
        #expect(plaintextURL.status == 1)
        #expect(plaintextURL.stderr.contains("rediss://"))
    }

    @Test("wrong or missing password: exit 5, the password never printed; the right one works")
    func wrongPassword() async throws {
        let server = try await RedisServerProcess(arguments: ["--requirepass", "s3cret-pass"])
        let wrong = try await CLIProcess.run(["budget", "list", "--redis-url", server.url(password: "hunter2-wrong")])
        #expect(wrong.status == 5, "\(wrong.stderr)")
        #expect(wrong.stderr.hasPrefix("quotakeeper: error: Redis refused the credentials"))
        #expect(!wrong.stderr.contains("hunter2-wrong") && !wrong.stdout.contains("hunter2-wrong"))
        let missing = try await CLIProcess.run(["budget", "list", "--json", "--redis-url", server.url()])
        #expect(missing.status == 5, "\(missing.stderr)")
        #expect(try missing.jsonError["code"] as? String == "redis_auth_failed")
        let right = try await CLIProcess.run(["budget", "list", "--prefix", "qk-cli-auth:"], environment: ["QUOTAKEEPER_REDIS_URL": server.url(password: "s3cret-pass")])
        #expect(right.status == 0, "\(right.stderr)")
        #expect(right.stdout.contains("no budgets under prefix 'qk-cli-auth:'"))
        #expect(!(try await CLIProcess.run(["--help"])).stdout.contains("s3cret-pass"))
    }

    @Test("usage errors: the parser's message and usage, exit 64 with or without --json; input refused while running: exit 1, one line or JSON; help exits 0")
    func usage() async throws {
        let help = try await CLIProcess.run(["--help"])
        #expect(help.status == 0)
        for command in ["budget", "status", "inspect", "peaks", "reserve", "reset", "breaker", "watch"] {
            #expect(help.stdout.contains("  \(command)"), "\(command)")
        }
        #expect(help.stdout.contains("Exit codes: 0 ok, 1 invalid input, 2 reservation denied"))
        #expect(help.stdout.contains("64 usage error"))
        let group = try await CLIProcess.run(["breaker"])
        #expect(group.status == 0)
        #expect(group.stdout.contains("disable"))

        // Refused by swift-argument-parser (parsing, a transform or a command's validate()).
        let usageCases: [([String], String)] = [
            (["frobnicate"], "Error: Unexpected argument 'frobnicate'"),
            (["status", "no-region"], "Error: budget 'no-region' must be MODEL@REGION"),
            (["status", "model@"], "budget region \"\" must be 1-200 characters"),
            (["status", "--connect-timeout", "soon"], "invalid duration 'soon'"),
            (["peaks", sonnet, "--since", "0s"], "invalid duration '0s'"),
            (["peaks", sonnet, "--headroom=-1"], "invalid headroom"),
            (["reserve", sonnet, "--input-tokens=-1", "--max-output-tokens", "1"], "invalid --input-tokens '-1'"),
            (["status", "--bogus"], "Error: Unknown option '--bogus'"),
            (["reserve", sonnet, "--max-output-tokens", "1"], "Error: Missing expected argument '--input-tokens"),
            (["status", "--apps-since", "30s"], "Error: --apps-since must be whole minutes"),
        ]
        for (arguments, message) in usageCases {
            let run = try await CLIProcess.run(arguments, environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url])
            #expect(run.isUsageError, "\(arguments): \(run.stderr)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
            let json = try await CLIProcess.run(arguments + ["--json"], environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url])
            #expect(json.isUsageError, "\(arguments): \(json.stderr)")  // the parser's text: the line did not parse
        }

        // Refused while the command runs: one escaped line, or the JSON error with the command's --json.
        let runtimeCases: [([String], String)] = [
            (["status", "--redis-url", "http://localhost"], "unsupported scheme"),
            (["status", "--prefix", "bad{prefix}"], "must not contain braces"),
        ]
        for (arguments, message) in runtimeCases {
            let run = try await CLIProcess.run(arguments, environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url])
            #expect(run.status == 1, "\(arguments): \(run.stderr)")
            #expect(run.stderr.hasPrefix("quotakeeper: error: "), "\(arguments): \(run.stderr)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(arguments)")
            #expect(run.stdout.isEmpty, "\(arguments)")
            let json = try await CLIProcess.run(arguments + ["--json"], environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url])
            #expect(json.status == 1, "\(arguments)")
            #expect(try json.jsonError["exit_code"] as? Int == 1, "\(arguments)")
            #expect(try json.jsonError["code"] as? String == "invalid_input", "\(arguments)")
            #expect((try json.jsonError["message"] as? String ?? "").contains(message), "\(arguments)")
            #expect(json.stdout.isEmpty, "\(arguments)")
        }

        // The parser decides whether --json was given: after `--` it is a budget name, refused as usage.
        let terminated = try await CLIProcess.run(["status", "--", "--json"], environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url])
        #expect(terminated.isUsageError, "\(terminated.stderr)")
        #expect(terminated.stderr.contains("Error: budget '--json' must be MODEL@REGION"), "\(terminated.stderr)")
        let commandHelp = try await CLIProcess.run(["status", "--help", "--json"])
        #expect(commandHelp.status == 0)
        #expect(commandHelp.stdout.contains("--apps-since"))
        #expect(commandHelp.stderr.isEmpty)
    }
}
