import Foundation
import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

/// Issue 17: terminal escape injection, ACL NOPERM, and numbers or durations the CLI used to round or accept.
@Suite("quotakeeper: untrusted input and output")
struct UntrustedInputTests {
    static let evilName = "evil\u{1B}[2J\u{1B}[31mFAKE\u{1B}[0m@us-east-1"

    @Test("a budget name with escape sequences is refused by budget set, status and reserve; the error is printed escaped")
    func controlCharactersRefused() async throws {
        try await CLIHarness.withFreshPrefix("escape-in") { cli in
            for arguments in [
                ["budget", "set", Self.evilName, "--rpm", "5"], ["status", Self.evilName],
                ["reserve", Self.evilName, "--input-tokens", "1", "--max-output-tokens", "1"],
                ["budget", "set", "model\u{202E}1v@us-east-1", "--rpm", "5"],  // a bidirectional override
            ] {
                let run = try await cli.run(arguments)
                #expect(run.isUsageError, "\(arguments): \(run.stderr)")
                #expect(run.stderr.contains("must not contain control or format characters"), "\(run.stderr)")
                #expect(!run.stderr.contains("\u{1B}") && !run.stdout.contains("\u{1B}") && !run.stderr.contains("\u{202E}"))
            }
            let shown = try await cli.run(["budget", "set", Self.evilName, "--rpm", "5"])
            #expect(shown.stderr.contains("evil\\x1b[2J\\x1b[31mFAKE\\x1b[0m@us-east-1"), "\(shown.stderr)")
            let listed = try await cli.run(["budget", "list", "--json"]).json["budgets"] as? [Any]
            #expect(listed?.isEmpty == true)  // nothing was created
        }
    }

    @Test("a budget planted in Redis with escape sequences is listed and shown escaped, never raw")
    func plantedNameEscaped() async throws {
        try await CLIHarness.withFreshPrefix("escape-out") { cli in
            #expect(try await cli.run(["budget", "set", sonnet, "--rpm", "5"]).status == 0)
            let redis = RedisClient(configuration: try TestRedis.configuration())
            // A ledger written behind the CLI's back (redis-cli, another tool): a copy of a real one.
            _ = try await redis.send(["COPY", "\(cli.prefix){\(sonnet)}:ledger", "\(cli.prefix){\(Self.evilName)}:ledger"])
            await redis.shutdown()
            let escaped = "evil\\x1b[2J\\x1b[31mFAKE\\x1b[0m@us-east-1"
            for arguments in [["budget", "list"], ["status"]] {
                let run = try await cli.run(arguments)
                #expect(run.status == 0, "\(arguments): \(run.stderr)")
                #expect(run.stdout.contains(escaped), "\(arguments): \(run.stdout)")
                #expect(run.stdout.contains(sonnet))
                #expect(!run.stdout.contains("\u{1B}") && !run.stderr.contains("\u{1B}"), "\(arguments)")
            }
            // JSON keeps the name exactly, escaped as JSON escapes it.
            let json = try await cli.run(["budget", "list", "--json"])
            #expect(json.stdout.contains("evil\\u001b[2J"), "\(json.stdout)")
            let names = (try json.json["budgets"] as? [[String: Any]])?.compactMap { $0["budget"] as? String }
            #expect(names?.contains(Self.evilName) == true)
        }
    }

    @Test("ACL NOPERM exits 5 naming the command the user may not run")
    func noPermission() async throws {
        let server = try await RedisServerProcess()
        let admin = try await CLIProcess.run(["budget", "set", sonnet, "--rpm", "5", "--redis-url", server.url(), "--prefix", "qk-acl:"])
        #expect(admin.status == 0, "\(admin.stderr)")
        let redis = RedisClient(configuration: try RedisConfiguration(url: server.url()))
        _ = try await redis.send(["ACL", "SETUSER", "reader", "on", ">reader-pass", "~*", "+@all", "-@scripting"])
        await redis.shutdown()
        let denied = try await CLIProcess.run(
            ["budget", "list", "--redis-url", server.url(user: "reader", password: "reader-pass"), "--prefix", "qk-acl:"])
        #expect(denied.status == 5, "\(denied.stderr)")
        #expect(denied.stderr.contains("NOPERM") && denied.stderr.lowercased().contains("evalsha"), "\(denied.stderr)")
        #expect(denied.stderr.contains("permission"))
        #expect(!denied.stderr.contains("reader-pass"))
        let json = try await CLIProcess.run(
            ["status", "--json", "--redis-url", server.url(user: "reader", password: "reader-pass"), "--prefix", "qk-acl:"])
        #expect(json.status == 5)
        #expect(try json.jsonError["code"] as? String == "redis_auth_failed")
        await server.stop()
    }

    @Test("a signed count and a duration that is not whole minutes are refused, not rounded")
    func numbersNotRounded() async throws {
        let cases: [([String], String)] = [
            (["budget", "set", sonnet, "--rpm", "+5"], "invalid limit '+5'"),
            (["budget", "set", sonnet, "--window-seconds", "+60", "--rpm", "5"], "invalid --window-seconds '+60'"),
            (["reserve", sonnet, "--input-tokens", "+1", "--max-output-tokens", "1"], "invalid --input-tokens '+1'"),
            (["status", "--apps-since", "30s"], "--apps-since must be whole minutes"),
            (["watch", "--apps-since", "90s", "--iterations", "1"], "--apps-since must be whole minutes"),
        ]
        for (arguments, message) in cases {
            let run = try await CLIProcess.run(arguments, environment: ["QUOTAKEEPER_REDIS_URL": TestRedis.url, "QUOTAKEEPER_PREFIX": "qk-cli-numbers:"])
            #expect(run.isUsageError, "\(arguments): \(run.stderr)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
    }
}
