import Foundation
import Logging

/// The loop of one connection thread: connect (with capped, jittered backoff), then repeatedly take a batch
/// of queued commands, write them in one go and read their replies in order.
///
/// A broken connection fails the commands of its batch that have no reply yet and is replaced; commands
/// already answered (timed out or cancelled) are skipped before writing, or read and dropped after.
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
        var consecutiveFailures = 0
        while true {
            if connection == nil {
                if queue.shuttingDown { return }
                do throws(RedisError) {
                    connection = try RedisConnection(configuration: configuration)
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
            if let error = reauthenticate(current, failing: live) ?? exchange(live, over: current) {
                logger.debug("Redis connection broken", metadata: ["redis.error": "\(error.message)"])
                connection = nil
                queue.setState(.connecting, ofWorker: index)
            }
        }
    }

    /// Writes the batch and reads one reply per command; on a connection failure, fails every command
    /// still without a reply and returns the error.
    private func exchange(_ batch: [PendingCommand], over connection: RedisConnection) -> RedisError? {
        var answered = 0
        do throws(RedisError) {
            for command in batch { try connection.append(command.command) }
            for command in batch {
                command.finish(.success(try connection.readReply()))
                answered += 1
            }
            return nil
        } catch {
            for command in batch[answered...] { command.finish(.failure(error)) }
            return error
        }
    }

    /// IAM connections re-authenticate before the batch once due; a failure fails the batch like a broken
    /// connection (and the connection is replaced, with a fresh token, by the next loop).
    private func reauthenticate(_ connection: RedisConnection, failing batch: [PendingCommand]) -> RedisError? {
        do throws(RedisError) {
            try connection.reauthenticateIfDue(configuration)
            return nil
        } catch {
            for command in batch { command.finish(.failure(error)) }
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
