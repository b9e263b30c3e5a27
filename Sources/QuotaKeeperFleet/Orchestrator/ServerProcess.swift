import Foundation
import Glibc

/// A long-running server the orchestrator launched (bedrock-sim, redis-server), its stdout discarded: signals,
/// and stopping it. Programs run to completion go through `ChildProcess.run` instead.
final class ServerProcess: Sendable {
    private let process: Process

    /// Launches `executable` with `arguments`.
    init(_ executable: URL, arguments: [String]) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    var isRunning: Bool { process.isRunning }
    var terminationStatus: Int32 { process.terminationStatus }

    /// Sends `number` (SIGSTOP, SIGCONT, ...) while it runs.
    func signal(_ number: Int32) {
        if process.isRunning { Glibc.kill(process.processIdentifier, number) }
    }

    /// SIGTERM, and waits for it to exit.
    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// kill -9 (resumed first if it was stopped, as a crash would find it), and waits for it to exit without
    /// blocking a thread.
    func kill() async {
        signal(SIGCONT)
        signal(SIGKILL)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
    }

    deinit { if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) } }
}
