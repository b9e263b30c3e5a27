import ArgumentParser
import Foundation
import QuotaKeeper

/// The documented exit codes of `quotakeeper` (docs/cli.md, "Exit codes").
enum ExitStatus: Int32, CaseIterable, Sendable {
    case ok = 0
    /// Bad usage or input: unknown option, negative number, bad duration, budget name or URL, a setting Redis refused.
    case invalidInput = 1
    /// `reserve`: the budget (or its breaker) refused the reservation.
    case denied = 2
    /// The budget is not configured in Redis under the prefix.
    case unknownBudget = 3
    /// Redis is unreachable, timed out or failed.
    case redisUnavailable = 4
    /// Redis refused the credentials (wrong or missing password), or the ACL user lacks a command or key
    /// permission (`NOPERM`; the message names the command).
    case redisAuthenticationFailed = 5
    /// A destructive command was not confirmed (answered no, or no TTY and no `--yes`).
    case notConfirmed = 6
    /// Redis answered something this version cannot read.
    case unexpected = 7

    /// The stable name used in JSON errors.
    var name: String {
        switch self {
        case .ok: "ok"
        case .invalidInput: "invalid_input"
        case .denied: "denied"
        case .unknownBudget: "unknown_budget"
        case .redisUnavailable: "redis_unavailable"
        case .redisAuthenticationFailed: "redis_auth_failed"
        case .notConfirmed: "not_confirmed"
        case .unexpected: "unexpected_reply"
        }
    }
}

/// An error the CLI reports as one line on stderr (or a JSON object with `--json`) and exits with.
struct CLIFailure: Error, Sendable {
    var status: ExitStatus
    var message: String

    init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    /// Classifies any error thrown while running a command.
    init(_ error: any Error) {
        switch error {
        case let failure as CLIFailure:
            self = failure
        case let error as LedgerError:
            switch error.code {
            case .invalidArgument, .invalidConfiguration: self.init(.invalidInput, error.message)
            case .unknownBudget: self.init(.unknownBudget, error.message)
            case .budgetExhausted, .waitBeyondDeadline: self.init(.denied, error.message)
            case .storeUnavailable:
                if let redis = error.underlying as? RedisError { self.init(redis) } else { self.init(.redisUnavailable, error.message) }
            default: self.init(.unexpected, error.message)
            }
        case let error as RedisError:
            switch error.code {
            case .invalidURL, .invalidArgument, .tlsConfigurationInvalid: self.init(.invalidInput, error.message)
            case .authenticationFailed: self.init(.redisAuthenticationFailed, "Redis refused the credentials: \(error.message)")
            case .permissionDenied:
                self.init(.redisAuthenticationFailed, "Redis refused a command permission (ACL NOPERM; grant it with ACL SETUSER): \(error.message)")
            case .serverError, .protocolError: self.init(.unexpected, "Redis failed: \(error.message)")
            default: self.init(.redisUnavailable, "Redis unavailable: \(error.message)")
            }
        default:
            self.init(.unexpected, String(describing: error))
        }
    }

    /// Writes the error to stderr: `quotakeeper: error: <message>`, or `{"error":{...}}` with `json`.
    func report(json: Bool) {
        let oneLine = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        if json {
            let object = JSON.object([
                ("error", .object([
                    ("code", .string(status.name)), ("exit_code", .int(Int(status.rawValue))), ("message", .string(oneLine)),
                ])),
            ])
            StandardStream.error.write(object.serialized(pretty: false) + "\n")
        } else {
            StandardStream.error.write("quotakeeper: error: \(TerminalText.escaped(oneLine))\n")
        }
    }
}

/// A `quotakeeper` command whose `run()` performs `execute()` and reports a failure the documented way: one
/// escaped line on stderr (`quotakeeper: error: <message>`), or the JSON error object when the command's
/// `--json` is set, then ends with the failure's `ExitStatus` as the parser's `ExitCode`, which the parser's
/// own `main()` exits with and prints nothing for. Usage errors never get here: the parser reports them before
/// `run()` (exit 64, `EX_USAGE`, with the usage).
protocol FailureReportingCommand: AsyncParsableCommand {
    /// Whether a failure is reported as a JSON error object (a read command's `--json`).
    var reportsFailuresAsJSON: Bool { get }

    /// The command's work.
    func execute() async throws
}

extension FailureReportingCommand {
    var reportsFailuresAsJSON: Bool { false }

    func run() async throws {
        do {
            try await execute()
        } catch let status as ExitCode {
            throw status  // a status the command chose after writing its output (`reserve` denied: 2)
        } catch {
            let failure = CLIFailure(error)
            failure.report(json: reportsFailuresAsJSON)
            throw ExitCode(failure.status.rawValue)
        }
    }
}

/// Unbuffered writes to stdout and stderr.
enum StandardStream {
    case output, error

    func write(_ text: String) {
        let handle = self == .output ? FileHandle.standardOutput : FileHandle.standardError
        handle.write(Data(text.utf8))
    }
}
