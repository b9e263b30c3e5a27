import Foundation
import Synchronization

/// What a finished child process left behind.
public struct ChildProcessResult: Sendable {
    public var status: Int32
    public var standardOutput: Data
    public var standardError: Data

    public var output: String { String(decoding: standardOutput, as: UTF8.self) }
    public var errorOutput: String { String(decoding: standardError, as: UTF8.self) }
}

/// Runs programs from tests without blocking Swift's cooperative thread pool: pipes are drained on threads
/// of their own and termination is awaited through `terminationHandler`, so other tests keep running.
public enum ChildProcess {
    /// Runs `executable` to completion and returns its exit status and output.
    public static func run(
        _ executable: URL, arguments: [String], environment: [String: String]? = nil, standardInput: Data? = nil
    ) async throws -> ChildProcessResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        let errors = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = standardInput == nil ? FileHandle.nullDevice : input
        let completion = Completion()
        return try await withCheckedThrowingContinuation { continuation in
            completion.install(continuation)
            process.terminationHandler = { completion.terminated(status: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                completion.failed(error)
                return
            }
            drain(output) { completion.collected(standardOutput: $0) }
            drain(errors) { completion.collected(standardError: $0) }
            if let standardInput {
                Thread.detachNewThread {
                    input.fileHandleForWriting.write(standardInput)
                    try? input.fileHandleForWriting.close()
                }
            }
        }
    }

    /// Reads a pipe to its end on a thread of its own.
    private static func drain(_ pipe: Pipe, _ done: @escaping @Sendable (Data) -> Void) {
        Thread.detachNewThread {
            done((try? pipe.fileHandleForReading.readToEnd()) ?? Data())
        }
    }

    /// Resumes the caller once the process has exited and both pipes are drained.
    private final class Completion: Sendable {
        private struct State {
            var continuation: CheckedContinuation<ChildProcessResult, any Error>?
            var status: Int32?
            var standardOutput: Data?
            var standardError: Data?
        }

        private let state = Mutex(State())

        func install(_ continuation: CheckedContinuation<ChildProcessResult, any Error>) {
            state.withLock { $0.continuation = continuation }
        }

        func failed(_ error: any Error) {
            let continuation = state.withLock { state in
                defer { state.continuation = nil }
                return state.continuation
            }
            continuation?.resume(throwing: error)
        }

        func terminated(status: Int32) { update { $0.status = status } }
        func collected(standardOutput data: Data) { update { $0.standardOutput = data } }
        func collected(standardError data: Data) { update { $0.standardError = data } }

        private func update(_ change: (inout State) -> Void) {
            let ready: (CheckedContinuation<ChildProcessResult, any Error>, ChildProcessResult)? = state.withLock { state in
                change(&state)
                guard let continuation = state.continuation, let status = state.status,
                      let output = state.standardOutput, let errors = state.standardError
                else { return nil }
                state.continuation = nil
                return (continuation, ChildProcessResult(status: status, standardOutput: output, standardError: errors))
            }
            if let (continuation, result) = ready { continuation.resume(returning: result) }
        }
    }
}
