import Synchronization

/// One caller's command on its way through the layer: queued, written, answered, timed out or cancelled.
///
/// Exactly one outcome wins (`finish` is idempotent); the caller may start waiting before or after it.
final class PendingCommand: Sendable {
    private enum State {
        case unanswered
        case awaited(CheckedContinuation<RedisReply, any Error>)
        case answeredBeforeAwait(Result<RedisReply, any Error>)
        case done
    }

    let command: RedisCommand
    /// `CLOCK_MONOTONIC` nanoseconds after which the watchdog answers `.timeout`.
    let deadline: UInt64
    private let state = Mutex<State>(.unanswered)

    init(_ command: RedisCommand, deadline: UInt64) {
        self.command = command
        self.deadline = deadline
    }

    /// Whether an outcome is already decided (answered, timed out or cancelled).
    var isFinished: Bool {
        state.withLock { state in
            switch state {
            case .unanswered, .awaited: return false
            case .answeredBeforeAwait, .done: return true
            }
        }
    }

    /// Decides the outcome if none is decided yet, resuming the waiting caller.
    func finish(_ result: Result<RedisReply, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<RedisReply, any Error>? in
            switch state {
            case .unanswered:
                state = .answeredBeforeAwait(result)
                return nil
            case .awaited(let continuation):
                state = .done
                return continuation
            case .answeredBeforeAwait, .done:
                return nil
            }
        }
        continuation?.resume(with: result)
    }

    /// Waits for the outcome; cancelling the task answers `CancellationError` at once (a command already
    /// written is still read off the connection by its thread, and its reply dropped).
    func reply() async throws -> RedisReply {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RedisReply, any Error>) in
                let early = state.withLock { state -> Result<RedisReply, any Error>? in
                    switch state {
                    case .unanswered:
                        state = .awaited(continuation)
                        return nil
                    case .answeredBeforeAwait(let result):
                        state = .done
                        return result
                    case .awaited, .done:
                        preconditionFailure("a pending command is awaited once")
                    }
                }
                if let early { continuation.resume(with: early) }
            }
        } onCancel: {
            finish(.failure(CancellationError()))
        }
    }
}
