import Foundation
import Logging

/// The loop of one connection thread: connect (with capped, jittered backoff), then repeatedly take a batch
/// of queued commands, write them in one go and read their replies in order.
///
/// A broken connection is replaced. Commands of its batch that cannot have reached the server (the server
/// had closed the idle connection, or the write failed before them) go back to the front of the queue for
/// the next healthy connection; those written without a reply fail with `.connectionLostAfterWrite`.
/// Commands already answered (timed out or cancelled) are skipped before writing, or read and dropped after.
struct ConnectionWorker: Sendable {
    let index: Int
    let configuration: RedisConfiguration
    let queue: CommandQueue
    let logger: Logger

    /// Starts the worker on a thread of its own.
    func start() {
        queue.threadStarted()
        Thread.detach(name: "quotakeeper.redis.\(index)") { [self] in
            run()
            queue.threadExited()
        }
    }

    private func run() {
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(configuration.endpoint)"
        logger[metadataKey: "redis.connection"] = "\(index)"
        var connection: IdleConnection?
        var tlsContext: TLSContext?
        var consecutiveFailures = 0
        while true {
            if connection == nil {
                if queue.shuttingDown { return }
                do throws(RedisError) {
                    if let settings = configuration.tls, tlsContext == nil { tlsContext = try TLSContext(settings) }
                    let opened = try RedisConnection.open(
                        configuration: configuration, tls: tlsContext, watch: SocketWatch(queue: queue, worker: index))
                    connection = IdleConnection(worker: self, connection: opened)
                    if consecutiveFailures > 0 { logger.debug("Redis connection re-established") }
                    consecutiveFailures = 0
                    queue.setState(.healthy, ofWorker: index)
                } catch {
                    consecutiveFailures += 1
                    queue.setState(.down, ofWorker: index, error: error)
                    let delay = backoff(afterFailures: consecutiveFailures)
                    logger.debug(
                        "Redis connection failed",
                        metadata: [
                            "redis.error": "\(error.message)",
                            "redis.retry_in_ms": "\(delay / 1_000_000)",
                        ])
                    guard queue.sleepBackoff(nanoseconds: delay) else { return }
                    continue
                }
            }
            guard let current = connection, let work = queue.nextWork(worker: index, idle: current) else { return }
            let failure: RedisError?
            switch work {
            case .batch(let batch):
                let live = batch.filter { !$0.isFinished }
                guard !live.isEmpty else { continue }
                failure = reauthenticate(current.connection, requeueing: live) ?? exchange(live, over: current.connection)
            case .written(let written):
                failure = read(written, over: current.connection)
            case .broken(let error):
                failure = error
            }
            if let failure {
                logger.debug("Redis connection broken", metadata: ["redis.error": "\(failure.message)"])
                connection = nil
                queue.setState(.connecting, ofWorker: index)
            }
        }
    }

    /// Writes the batch and reads one reply per command; on a connection failure, re-queues the commands
    /// that cannot have reached the server, fails those written without a reply, and returns the error.
    private func exchange(_ batch: [PendingCommand], over connection: RedisConnection) -> RedisError? {
        switch write(batch, over: connection) {
        case .success(let written): return read(written, over: connection)
        case .failure(let error): return error
        }
    }

    /// Writes the batch in one go and returns the commands written. On a connection failure, re-queues the
    /// commands that cannot have reached the server, fails those that may have, and returns the error.
    /// Runs on this worker's thread, or on a caller's that claimed the idle connection (`IdleConnection`).
    func write(_ batch: [PendingCommand], over connection: RedisConnection) -> Result<[PendingCommand], RedisError> {
        if connection.peerHasClosed {
            queue.requeue(batch)
            return .failure(RedisError(code: .connectionClosed, message: "Redis at \(configuration.endpoint) closed the idle connection"))
        }
        var buffered: [PendingCommand] = []
        buffered.reserveCapacity(batch.count)
        for command in batch {
            do throws(RedisError) {
                try connection.append(command.command)
                buffered.append(command)
            } catch {
                command.finish(.failure(error))
            }
        }
        do throws(RedisConnection.WriteFailure) {
            try connection.flush()
        } catch {
            queue.requeue(Array(buffered[error.possiblyWritten...]))
            fail(buffered[..<error.possiblyWritten], after: error.error)
            return .failure(error.error)
        }
        return .success(buffered)
    }

    /// Reads one reply per written command, in order; on a failure fails the unanswered ones and returns it.
    private func read(_ written: [PendingCommand], over connection: RedisConnection) -> RedisError? {
        var answered = 0
        do throws(RedisError) {
            for command in written {
                command.finish(.success(try connection.readReply()))
                answered += 1
            }
            return nil
        } catch {
            fail(written[answered...], after: error)
            return error
        }
    }

    /// Fails written commands whose replies will never come: a broken connection becomes
    /// `.connectionLostAfterWrite` (outcome unknown); a timeout or protocol error keeps its code.
    private func fail(_ written: ArraySlice<PendingCommand>, after error: RedisError) {
        var lost = error
        if error.code == .connectionClosed {
            lost.code = .connectionLostAfterWrite
            lost.message += " after the command was written; it may or may not have run"
        }
        for command in written { command.finish(.failure(lost)) }
    }

    /// IAM connections re-authenticate before the batch once due; on a failure nothing of the batch was
    /// written: it is re-queued and the connection replaced (a new one gets a fresh token).
    private func reauthenticate(_ connection: RedisConnection, requeueing batch: [PendingCommand]) -> RedisError? {
        do throws(RedisError) {
            try connection.reauthenticateIfDue(configuration)
            return nil
        } catch {
            queue.requeue(batch)
            return error
        }
    }

    /// Full jitter: uniform in [0, min(maximum, initial x 2^(failures-1))].
    private func backoff(afterFailures failures: Int) -> UInt64 {
        let initial = UInt64(RedisConnection.milliseconds(configuration.reconnect.initialBackoff)) * 1_000_000
        let maximum = UInt64(RedisConnection.milliseconds(configuration.reconnect.maximumBackoff)) * 1_000_000
        let ceiling = min(maximum, initial << UInt64(min(failures - 1, 20)))
        return UInt64.random(in: 0...ceiling)
    }
}

/// A connection whose thread sleeps with nothing to do, which one caller at a time may claim and write on
/// (`CommandQueue.submit`) before handing it back to the thread to read the replies.
///
/// `@unchecked Sendable` because `RedisConnection` is not: `CommandQueue`'s hand-off states (idle, claimed,
/// handed back, all changed under its mutex) give the connection to exactly one thread at a time.
final class IdleConnection: @unchecked Sendable {
    let worker: ConnectionWorker
    let connection: RedisConnection

    init(worker: ConnectionWorker, connection: RedisConnection) {
        self.worker = worker
        self.connection = connection
    }

    /// Writes the commands on the caller's thread and says what the connection's thread does next. A write
    /// that would need a round trip first (an IAM re-authentication) is left to the thread.
    func write(_ commands: [PendingCommand]) -> CommandQueue.Work {
        guard !connection.isReauthenticationDue(worker.configuration) else { return .batch(commands) }
        let outcome = connection.usesTLS
            ? Thread.withPipeSignalBlocked { worker.write(commands, over: connection) }
            : worker.write(commands, over: connection)
        switch outcome {
        case .success(let written): return .written(written)
        case .failure(let error): return .broken(error)
        }
    }
}
