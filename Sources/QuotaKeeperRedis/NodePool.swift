import Foundation
import Logging

/// The connections to one Redis node: a `CommandQueue`, its connection threads and its watchdog.
///
/// A single-node `RedisClient` has one; a cluster client has one per master (see `ClusterRouter`).
/// Callers hand it `PendingCommand`s that already carry their deadline, so retries after a cluster
/// redirection stay within the caller's one command timeout.
final class NodePool: Sendable {
    /// The node's configuration (its endpoint; the rest is the client's).
    let configuration: RedisConfiguration
    private let queue: CommandQueue

    /// Starts the node's connection threads and watchdog; connections are made in the background.
    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        let connections = max(1, configuration.pool.connections)
        queue = CommandQueue(
            workerCount: connections, maximumBatch: configuration.pool.maximumBatch, spin: configuration.pool.spinBeforeSleep,
            shutdownGrace: configuration.timeouts.shutdownGrace)
        let timeoutError = RedisError(
            code: .timeout,
            message: "Redis at \(configuration.endpoint) did not answer within \(configuration.timeouts.command)")
        for index in 0..<connections {
            ConnectionWorker(index: index, configuration: configuration, queue: queue, logger: logger).start()
        }
        queue.threadStarted()
        let queue = queue
        Thread.detach(name: "quotakeeper.redis.watchdog") {
            queue.runWatchdog(timeout: timeoutError)
            queue.threadExited()
        }
    }

    deinit {
        queue.shutdown()
    }

    var endpoint: RedisConfiguration.Endpoint { configuration.endpoint }

    /// Queues commands to be written back to back on one connection (unless a batch boundary splits them).
    func submit(_ commands: [PendingCommand]) {
        queue.submit(commands)
    }

    /// Sends one command and returns its reply (an error reply as an `.error` value).
    func run(_ command: RedisCommand, deadline: UInt64) async throws -> RedisReply {
        let pending = PendingCommand(command, deadline: deadline)
        queue.submit([pending])
        return try await pending.reply()
    }

    /// Sends commands back to back and returns their replies in order (error replies as `.error` values).
    /// - Throws: the first connection failure, timeout or cancellation; every other command then fails too.
    func run(_ commands: [RedisCommand], deadline: UInt64) async throws -> [RedisReply] {
        let pending = commands.map { PendingCommand($0, deadline: deadline) }
        queue.submit(pending)
        return try await Self.replies(of: pending)
    }

    /// Waits for every command's reply, in order; on the first failure fails the rest with it and throws.
    static func replies(of pending: [PendingCommand]) async throws -> [RedisReply] {
        var replies: [RedisReply] = []
        replies.reserveCapacity(pending.count)
        do {
            for command in pending { replies.append(try await command.reply()) }
        } catch {
            for command in pending { command.finish(.failure(error)) }
            throw error
        }
        return replies
    }

    /// Stops the pool: queued commands fail with `.clientShutdown`, written ones get their replies;
    /// `onExit` runs once every thread of the pool has exited (at once if none runs).
    func shutdown(onExit: @escaping @Sendable () -> Void) {
        queue.shutdown(onExit: onExit)
    }
}
