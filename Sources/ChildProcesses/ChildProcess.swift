import Foundation
import Subprocess
import TimeLimit
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Where a child's standard output or standard error goes.
public enum ChildOutput: Sendable, Equatable {
    /// Kept in a private file (folder 0700, file 0600) and returned with the result; read while a background
    /// child runs with ``BackgroundChildProcess/standardOutput`` / ``BackgroundChildProcess/standardError``.
    case collected
    /// `/dev/null`.
    case discarded
    /// This process's own stream (stdout to stdout, stderr to stderr).
    case inherited
}

/// What a finished child process left behind.
public struct ChildProcessResult: Sendable {
    /// The exit code, or 128 + the signal number when a signal ended it (as a shell reports it).
    public var status: Int32
    /// What it wrote to stdout (empty unless collected).
    public var standardOutput: Data
    /// What it wrote to stderr (empty unless collected).
    public var standardError: Data

    public var output: String { String(decoding: standardOutput, as: UTF8.self) }
    public var errorOutput: String { String(decoding: standardError, as: UTF8.self) }
}

/// A child process did not finish in time, or could not be started.
public struct ChildProcessError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// It ran past its time limit and was stopped (SIGTERM, then SIGKILL 2 s later).
        public static let timedOut = Code("timedOut")
        /// It could not be started (missing executable, no permission), or its output could not be set up.
        public static let launchFailed = Code("launchFailed")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error)?

    public var description: String {
        "ChildProcessError.\(code): \(message)" + (underlying.map { " (\($0))" } ?? "")
    }
}

/// Child processes on swift-subprocess: spawned with `posix_spawn`, awaited through a pidfd on the package's own
/// monitor thread, so waiting never blocks a thread of Swift's cooperative pool; a cancelled wait stops the child.
///
/// Output goes to files rather than pipes: a grandchild that inherits a pipe (bedrock-sim and app instances of a
/// `quotakeeper-fleet` run, say) cannot hold a reader past the child's exit, nothing is lost or capped, and a
/// background server's output can be read while it runs.
public enum ChildProcess {
    /// Runs `executable` to completion.
    /// - Parameters:
    ///   - environment: the whole environment; nil inherits this process's.
    ///   - standardInput: bytes for its stdin; nil gives it `/dev/null`.
    ///   - timeout: when set, a child still running then is stopped (SIGTERM, SIGKILL 2 s later) and this throws
    ///     ``ChildProcessError/Code/timedOut``; cancelling the calling task stops it the same way.
    /// - Throws: ``ChildProcessError``; a non-zero exit is a result, not an error.
    public static func run(
        _ executable: URL, arguments: [String], environment: [String: String]? = nil, standardInput: Data? = nil,
        standardOutput: ChildOutput = .collected, standardError: ChildOutput = .collected, timeout: Duration? = nil
    ) async throws -> ChildProcessResult {
        let files = try ChildOutputFiles(standardInput: standardInput, standardOutput: standardOutput, standardError: standardError)
        defer { files.remove() }
        let configuration = ChildProcess.configuration(executable, arguments: arguments, environment: environment)
        let launch = { @Sendable () async throws -> TerminationStatus in
            do {
                return try await Subprocess.run(
                    configuration, input: .fileDescriptor(try files.input(), closeAfterSpawningProcess: true),
                    output: .fileDescriptor(try files.output(), closeAfterSpawningProcess: true),
                    error: .fileDescriptor(try files.error(), closeAfterSpawningProcess: true)
                ).terminationStatus
            } catch let error as ChildProcessError {
                throw error
            } catch let error where !(error is CancellationError) {
                throw ChildProcessError(code: .launchFailed, message: "could not run \(executable.path)", underlying: error)
            }
        }
        let termination: TerminationStatus
        if let timeout {
            guard let finished = try await withTimeLimit(timeout, launch) else {
                throw ChildProcessError(
                    code: .timedOut, message: "\(executable.lastPathComponent) \(arguments.first ?? "") did not finish within \(timeout)")
            }
            termination = finished
        } else {
            termination = try await launch()
        }
        return ChildProcessResult(
            status: termination.exitStatus, standardOutput: files.collectedOutput(), standardError: files.collectedError())
    }

    /// SIGTERM first (servers and app instances shut down cleanly), SIGKILL 2 s later.
    static let teardown: [TeardownStep] = [.gracefulShutDown(allowedDurationToNextStep: .seconds(2))]

    static func configuration(_ executable: URL, arguments: [String], environment: [String: String]?) -> Configuration {
        var options = PlatformOptions()
        options.teardownSequence = teardown
        let variables: Environment = environment.map { variables in
            .custom(Dictionary(uniqueKeysWithValues: variables.compactMap { name, value in
                Environment.Key(rawValue: name).map { ($0, value) }
            }))
        } ?? .inherit
        return Configuration(executable: .path(FilePath(executable.path)), arguments: Arguments(arguments), environment: variables, platformOptions: options)
    }
}

extension TerminationStatus {
    /// The exit code, or 128 + the signal number.
    var exitStatus: Int32 {
        switch self {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }
}

/// The files behind a child's stdin, stdout and stderr, in a private folder removed with ``remove()``.
final class ChildOutputFiles: Sendable {
    private let folder: URL?
    private let standardInput: URL?
    private let standardOutput: ChildOutput
    private let standardError: ChildOutput

    init(standardInput input: Data?, standardOutput: ChildOutput, standardError: ChildOutput) throws {
        self.standardOutput = standardOutput
        self.standardError = standardError
        guard input != nil || standardOutput == .collected || standardError == .collected else {
            folder = nil
            standardInput = nil
            return
        }
        let folder = FileManager.default.temporaryDirectory.appending(path: "qk-child-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for (name, collected) in [("stdout", standardOutput == .collected), ("stderr", standardError == .collected)] where collected {
                _ = FileManager.default.createFile(atPath: folder.appending(path: name).path, contents: nil, attributes: [.posixPermissions: 0o600])
            }
            if let input {
                _ = FileManager.default.createFile(atPath: folder.appending(path: "stdin").path, contents: input, attributes: [.posixPermissions: 0o600])
            }
        } catch {
            try? FileManager.default.removeItem(at: folder)
            throw ChildProcessError(code: .launchFailed, message: "could not create \(folder.path) for a child's output", underlying: error)
        }
        self.folder = folder
        standardInput = input == nil ? nil : folder.appending(path: "stdin")
    }

    var outputFile: URL? { standardOutput == .collected ? folder?.appending(path: "stdout") : nil }
    var errorFile: URL? { standardError == .collected ? folder?.appending(path: "stderr") : nil }

    /// A descriptor for the child's stdin (the child's copy is closed once it has started).
    func input() throws -> FileDescriptor {
        try open(standardInput?.path ?? "/dev/null", .readOnly)
    }

    func output() throws -> FileDescriptor { try descriptor(for: standardOutput, file: outputFile, inherited: 1) }
    func error() throws -> FileDescriptor { try descriptor(for: standardError, file: errorFile, inherited: 2) }

    func collectedOutput() -> Data { outputFile.flatMap { try? Data(contentsOf: $0) } ?? Data() }
    func collectedError() -> Data { errorFile.flatMap { try? Data(contentsOf: $0) } ?? Data() }

    func remove() {
        if let folder { try? FileManager.default.removeItem(at: folder) }
    }

    private func descriptor(for destination: ChildOutput, file: URL?, inherited: CInt) throws -> FileDescriptor {
        switch destination {
        case .collected: return try open(file!.path, .writeOnly)
        case .discarded: return try open("/dev/null", .writeOnly)
        // A duplicate, so that closing the child's copy after the spawn leaves this process's stream open.
        case .inherited: return try FileDescriptor(rawValue: inherited).duplicate()
        }
    }

    private func open(_ path: String, _ mode: FileDescriptor.AccessMode) throws -> FileDescriptor {
        try FileDescriptor.open(FilePath(path), mode, options: [.closeOnExec])
    }
}
