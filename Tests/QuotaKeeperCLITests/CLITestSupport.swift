import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

/// What one run of the built `quotakeeper` binary printed and returned.
struct CLIRun: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Whether swift-argument-parser refused the command line: exit 64 (`EX_USAGE`), `Error: <message>` and the
    /// usage on stderr, nothing on stdout (with or without `--json`).
    var isUsageError: Bool {
        status == 64 && stderr.hasPrefix("Error: ") && stderr.contains("Usage: quotakeeper") && stdout.isEmpty
    }

    /// stdout parsed as one JSON object.
    var json: [String: Any] {
        get throws {
            let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8))
            guard let dictionary = object as? [String: Any] else { throw TestSupportError("stdout is not a JSON object: \(stdout)") }
            return dictionary
        }
    }

    /// stderr parsed as the `{"error": {...}}` object of a failed `--json` command.
    var jsonError: [String: Any] {
        get throws {
            let object = try JSONSerialization.jsonObject(with: Data(stderr.utf8)) as? [String: Any]
            guard let error = object?["error"] as? [String: Any] else { throw TestSupportError("stderr is not a JSON error: \(stderr)") }
            return error
        }
    }
}

/// Runs the built CLI with a unique key prefix on the test Redis, and deletes the prefix's keys afterwards.
struct CLIHarness: Sendable {
    let prefix: String
    let url: String

    /// Runs `body` with a fresh prefix (`qk-cli-<label>-<uuid>:`), then removes every key under it.
    static func withFreshPrefix(_ label: String, _ body: (CLIHarness) async throws -> Void) async throws {
        let harness = CLIHarness(prefix: "qk-cli-\(label)-\(UUID().uuidString.prefix(8)):", url: TestRedis.url)
        let client = RedisClient(configuration: try TestRedis.configuration())
        do {
            try await body(harness)
        } catch {
            try? await TestRedis.deleteKeys(matching: harness.prefix, using: client)
            await client.shutdown()
            throw error
        }
        try await TestRedis.deleteKeys(matching: harness.prefix, using: client)
        await client.shutdown()
    }

    /// `quotakeeper <arguments> --redis-url <test> --prefix <unique>`.
    func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) async throws -> CLIRun {
        try await CLIProcess.run(arguments + ["--redis-url", url, "--prefix", prefix], stdin: stdin, environment: environment)
    }

    /// Like `run`, but under a pseudo-terminal (`script`), so stdin and stdout are a TTY; `input` is typed in.
    func runOnTerminal(_ arguments: [String], input: String = "", environment: [String: String] = [:]) async throws -> CLIRun {
        try await CLIProcess.runOnTerminal(arguments + ["--redis-url", url, "--prefix", prefix], input: input, environment: environment)
    }
}

enum CLIProcess {
    /// The `quotakeeper` binary in the build folder holding the running test bundle.
    static func executable() throws -> URL {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL,
        ] + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        for folder in candidates {
            let url = folder.appending(path: "quotakeeper")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        throw TestSupportError("quotakeeper not found next to the test bundle (looked in \(candidates.map(\.path))); build all products first")
    }

    /// Runs the binary with `arguments`; stdout and stderr are collected.
    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) async throws -> CLIRun {
        try await launch(executable: try executable(), arguments: arguments, stdin: stdin, environment: environment)
    }

    /// Runs the binary under `script -qec`, which gives it a pseudo-terminal; `input` is written to its stdin.
    static func runOnTerminal(_ arguments: [String], input: String, environment: [String: String]) async throws -> CLIRun {
        let command = ([try executable().path] + arguments).map(shellQuoted).joined(separator: " ")
        return try await launch(
            executable: URL(fileURLWithPath: "/usr/bin/script"), arguments: ["-qec", command, "/dev/null"], stdin: input,
            environment: environment)
    }

    private static func shellQuoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    private static func launch(executable: URL, arguments: [String], stdin: String?, environment: [String: String]) async throws -> CLIRun {
        var variables = ProcessInfo.processInfo.environment
        for name in ["QUOTAKEEPER_REDIS_URL", "QUOTAKEEPER_PREFIX", "NO_COLOR"] { variables[name] = nil }
        variables.merge(environment) { _, new in new }
        let result = try await ChildProcess.run(executable, arguments: arguments, environment: variables, standardInput: Data((stdin ?? "").utf8))
        return CLIRun(status: result.status, stdout: result.output, stderr: result.errorOutput)
    }
}

/// A JSON value at a path of object keys, e.g. `value(json, "usage", "rpm", "used")`.
func value(_ object: Any?, _ path: String...) -> Any? {
    var current = object
    for key in path { current = (current as? [String: Any])?[key] }
    return current
}

/// The test budget name used throughout: a Claude Sonnet 4.5 profile in us-east-1.
let sonnet = "us.anthropic.claude-sonnet-4-5-20250929-v1:0@us-east-1"
