import Foundation
import Glibc
import Subprocess
import Synchronization

/// A child that runs in the background until it is stopped or ends on its own: a `redis-server`, `bedrock-sim` or
/// `quotakeeper export --serve` that a test or the fleet demo starts, signals (SIGSTOP, SIGCONT, SIGTERM, SIGKILL)
/// and reads the output of while it runs.
///
/// swift-subprocess ties a child to the scope of one `run` call; here that call runs in a task of its own, which
/// hands back the pid once the child has started and ends when the child has exited and been reaped. Signals go
/// by pid (`kill(2)`) while the child has not been reaped, as they did with Foundation's `Process`; after that
/// they are not sent, so a reused pid is never signalled (but for the moment between reaping and recording it).
public final class BackgroundChildProcess: Sendable {
    /// The child's pid.
    public let processIdentifier: pid_t
    private let files: ChildOutputFiles
    private let execution: Task<Int32, any Error>
    private let finished: ExitRecord

    /// The exit status, set once the child has been reaped.
    private final class ExitRecord: Sendable {
        let status = Mutex<Int32?>(nil)
    }

    /// Starts `executable`; returns once it has been spawned.
    /// - Parameters:
    ///   - environment: the whole environment; nil inherits this process's.
    /// - Throws: ``ChildProcessError/Code/launchFailed`` when it cannot be started.
    public init(
        _ executable: URL, arguments: [String], environment: [String: String]? = nil,
        standardOutput: ChildOutput = .discarded, standardError: ChildOutput = .inherited
    ) async throws {
        let files = try ChildOutputFiles(standardInput: nil, standardOutput: standardOutput, standardError: standardError)
        let configuration = ChildProcess.configuration(executable, arguments: arguments, environment: environment)
        let (started, startedContinuation) = AsyncStream<pid_t>.makeStream()
        let finished = ExitRecord()
        execution = Task {
            defer { startedContinuation.finish() }
            let status = try await Subprocess.run(
                configuration, input: .fileDescriptor(try files.input(), closeAfterSpawningProcess: true),
                output: .fileDescriptor(try files.output(), closeAfterSpawningProcess: true),
                error: .fileDescriptor(try files.error(), closeAfterSpawningProcess: true)
            ) { execution in
                startedContinuation.yield(execution.processIdentifier.value)
                startedContinuation.finish()
            }.terminationStatus.exitStatus
            finished.status.withLock { $0 = status }
            return status
        }
        // The pid once the child has started; nothing when it could not be (the stream ends with the task).
        var spawned = started.makeAsyncIterator()
        guard let pid = await spawned.next() else {
            defer { files.remove() }
            let failure: (any Error)? = if case .failure(let error) = await execution.result { error } else { nil }
            throw ChildProcessError(code: .launchFailed, message: "could not run \(executable.path)", underlying: failure)
        }
        processIdentifier = pid
        self.files = files
        self.finished = finished
    }

    /// Kills a child still running (SIGCONT first, in case it was paused) and removes its output files.
    deinit {
        signal(SIGCONT)
        signal(SIGKILL)
        files.remove()
    }

    /// Sends `number` (SIGSTOP, SIGCONT, SIGTERM, ...) unless the child has already exited.
    public func signal(_ number: Int32) {
        finished.status.withLock { status in
            if status == nil { _ = kill(processIdentifier, number) }
        }
    }

    /// The exit status (128 + signal number after a signal), or nil while it runs.
    public var exitStatus: Int32? { finished.status.withLock { $0 } }

    /// Waits until the child has exited and returns its exit status (128 + signal number after a signal).
    public func waitForExit() async throws -> Int32 {
        try await execution.value
    }

    /// What it has written to stdout so far (when collected).
    public var standardOutput: String { String(decoding: files.collectedOutput(), as: UTF8.self) }
    /// What it has written to stderr so far (when collected).
    public var standardError: String { String(decoding: files.collectedError(), as: UTF8.self) }
}
