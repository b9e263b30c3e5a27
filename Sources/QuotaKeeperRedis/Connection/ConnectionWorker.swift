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
        var connection: RedisConnection?
        var tlsContext: TLSContext?
        var consecutiveFailures = 0
        while true {
            if connection == nil {
                if queue.shuttingDown { return }
                do throws(RedisError) {
                    if let settings = configuration.tls, tlsContext == nil { tlsContext = try TLSContext(settings) }
                    connection = try RedisConnection.open(configuration: configuration, tls: tlsContext)
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
            guard let batch = queue.nextBatch(), let current = connection else { return }
            let live = batch.filter { !$0.isFinished }
            guard !live.isEmpty else { continue }
            if let error = reauthenticate(current, requeueing: live) ?? exchange(live, over: current) {
                logger.debug("Redis connection broken", metadata: ["redis.error": "\(error.message)"])
                connection = nil
                queue.setState(.connecting, ofWorker: index)
            }
        }
    }

    /// Writes the batch and reads one reply per command; on a connection failure, re-queues the commands
    /// that cannot have reached the server, fails those written without a reply, and returns the error.
    private func exchange(_ batch: [PendingCommand], over connection: RedisConnection) -> RedisError? {
        if connection.peerHasClosed {
            queue.requeue(batch)
            return RedisError(code: .connectionClosed, message: "Redis at \(configuration.endpoint) closed the idle connection")
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
            return error.error
        }
        var answered = 0
        do throws(RedisError) {
            for command in buffered {
                command.finish(.success(try connection.readReply()))
                answered += 1
            }
            return nil
        } catch {
            fail(buffered[answered...], after: error)
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
