import ArgumentParser
import Foundation
import Logging
import QuotaKeeper

/// The options every command shares: where Redis is and which key prefix the fleet uses.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("redis-url"),
        help: ArgumentHelp(
            "Redis URL: redis://[user:password@]host[:port][/db] or unix:///path (default: $QUOTAKEEPER_REDIS_URL, else redis://127.0.0.1:6379).",
            valueName: "url"))
    var redisURL: String?

    @Option(help: ArgumentHelp("Key prefix of the fleet's budgets (default: $QUOTAKEEPER_PREFIX, else quotakeeper:).", valueName: "prefix"))
    var prefix: String?

    @Option(
        name: .customLong("connect-timeout"),
        help: ArgumentHelp("How long to wait for Redis to accept the connection, e.g. 500ms, 2s.", valueName: "duration"),
        transform: ArgumentSyntax.duration)
    var connectTimeout: Duration = .seconds(2)

    @Option(
        name: .customLong("redis-tls-ca"),
        help: ArgumentHelp("rediss:// only: PEM bundle of the CAs to trust (default: $QUOTAKEEPER_REDIS_TLS_CA, else the system trust store).", valueName: "path"))
    var tlsCAFile: String?

    @Option(
        name: .customLong("redis-tls-cert"),
        help: ArgumentHelp("rediss:// only: PEM client certificate for mutual TLS (default: $QUOTAKEEPER_REDIS_TLS_CERT).", valueName: "path"))
    var tlsCertificateFile: String?

    @Option(
        name: .customLong("redis-tls-key"),
        help: ArgumentHelp("rediss:// only: PEM private key of the client certificate (default: $QUOTAKEEPER_REDIS_TLS_KEY).", valueName: "path"))
    var tlsKeyFile: String?

    @Flag(
        name: .customLong("redis-tls-insecure-skip-verify"),
        help: "rediss:// only, DANGEROUS: do not verify the server's certificate (anyone on the path can read and forge every command). Throw-away test setups only.")
    var tlsSkipVerification = false

    /// The URL in effect (the option, the environment or the default). Never printed: it may hold a password.
    var resolvedURL: String {
        redisURL ?? ProcessInfo.processInfo.environment["QUOTAKEEPER_REDIS_URL"] ?? "redis://127.0.0.1:6379"
    }

    var resolvedPrefix: String {
        prefix ?? ProcessInfo.processInfo.environment["QUOTAKEEPER_PREFIX"] ?? "quotakeeper:"
    }

    /// Connects, runs `body` with a ledger over the fleet's keys, and shuts the connection down.
    /// - Parameter burndown: the output burndown applied when the CLI itself settles a reservation.
    func withLedger<Result: Sendable>(
        burndown: BurndownTable = .bedrockDefaults, _ body: (QuotaLedger) async throws -> Result
    ) async throws -> Result {
        let configuration = try redisConfiguration()
        var logger = Logger(label: "quotakeeper.cli")
        logger.logLevel = .critical
        let client = RedisClient(configuration: configuration, logger: logger)
        do {
            let ledger = try QuotaLedger(redis: client, keyPrefix: resolvedPrefix, burndown: burndown, logger: logger)
            let result = try await body(ledger)
            await client.shutdown()
            return result
        } catch let error as LedgerError where error.code == .unknownBudget {
            await client.shutdown()
            let message = error.message.replacingOccurrences(of: " or in this ledger", with: "")  // the CLI seeds nothing
            throw CLIFailure(.unknownBudget, "\(message) (prefix '\(resolvedPrefix)'; 'quotakeeper budget list' lists the budgets)")
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// The URL, timeouts and TLS options (flags over `QUOTAKEEPER_REDIS_TLS_*`) as one configuration.
    /// - Throws: `CLIFailure` `.invalidInput` for TLS options with a URL that is not `rediss://`.
    func redisConfiguration() throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: resolvedURL, environment: ProcessInfo.processInfo.environment)
        configuration.timeouts.connect = connectTimeout
        configuration.timeouts.command = connectTimeout + .seconds(3)
        configuration.pool.connections = 1
        let tlsOptionsGiven = tlsCAFile != nil || tlsCertificateFile != nil || tlsKeyFile != nil || tlsSkipVerification
        guard var tls = configuration.tls else {
            if tlsOptionsGiven {
                throw CLIFailure(.invalidInput, "--redis-tls-* options need a rediss:// URL (TLS); the URL in effect is not one")
            }
            return configuration
        }
        tls.caFile = tlsCAFile ?? tls.caFile
        tls.certificateFile = tlsCertificateFile ?? tls.certificateFile
        tls.privateKeyFile = tlsKeyFile ?? tls.privateKeyFile
        if tlsSkipVerification { tls.verification = .dangerouslyDisabled }
        configuration.tls = tls
        return configuration
    }
}

/// `--json` for read commands.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON (stable fields, documented in docs/cli.md) instead of a table.")
    var json = false

    /// Prints `value` as indented JSON, or `table()` as text.
    func emit(_ value: @autoclosure () -> JSON, table: () -> String) {
        if json {
            StandardStream.output.write(value().serialized(pretty: true) + "\n")
        } else {
            StandardStream.output.write(table() + "\n")
        }
    }
}

/// `--yes` and the interactive confirmation of destructive commands.
struct ConfirmationOptions: ParsableArguments {
    @Flag(name: [.customShort("y"), .long], help: "Do not ask for confirmation.")
    var yes = false

    /// Returns when confirmed: `--yes`, or an answer of `y`/`yes` read from stdin, which must be a terminal
    /// (a script must say `--yes`). Asks on stderr.
    /// - Throws: `CLIFailure` `.notConfirmed` otherwise.
    func confirm(_ question: String) throws {
        if yes { return }
        guard isatty(STDIN_FILENO) == 1 else {
            throw CLIFailure(.notConfirmed, "\(question): refusing without confirmation (stdin is not a terminal); pass --yes to proceed")
        }
        StandardStream.error.write("\(question) [y/N] ")
        let answer = (readLine() ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        guard answer == "y" || answer == "yes" else {
            throw CLIFailure(.notConfirmed, "not confirmed; nothing was changed")
        }
    }
}

/// A read command: with `--json`, its output and its failures are JSON.
protocol JSONOutputCommand: FailureReportingCommand {
    var output: OutputOptions { get }
}

extension JSONOutputCommand {
    var reportsFailuresAsJSON: Bool { output.json }
}

extension BreakerCommand.Status { var output: OutputOptions { target.output } }
extension BreakerCommand.Open { var output: OutputOptions { target.output } }
extension BreakerCommand.Enable { var output: OutputOptions { target.output } }
extension BreakerAction { var output: OutputOptions { target.output } }
