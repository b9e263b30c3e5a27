import Foundation
import Logging
import ServiceLifecycle

/// An `async` Redis client over a pool of hiredis connections, each owned by a thread of the layer.
///
/// Callers never block Swift's cooperative thread pool: a command is packed in the caller's task, queued,
/// and written by a connection thread together with every other command queued meanwhile (one write and
/// one read per batch), so throughput grows with the number of concurrent callers.
///
/// Every command is answered within `configuration.timeouts.command`: with its reply, a typed `RedisError`,
/// or `CancellationError` when the calling task is cancelled.
///
/// Given one node of a Redis Cluster, the client discovers the others and sends each command to the master
/// of its key's slot (`RedisCommand.keyIndex`), following `MOVED`/`ASK` and retrying `TRYAGAIN`/`CLUSTERDOWN`
/// within the same timeout; see `ClusterRouter`.
public final class RedisClient: Sendable {
    /// The configuration the client was created with.
    public let configuration: RedisConfiguration
    /// One connection pool per node and the choice of node per command (a single node unless the
    /// endpoint is a Redis Cluster node; see `RedisConfiguration.ClusterMode`).
    let router: ClusterRouter

    /// Creates the client and starts its connection threads; connections are made in the background.
    /// - Parameters:
    ///   - configuration: where Redis is and how to talk to it.
    ///   - logger: the caller's logger; receives connection events at debug level (never passwords or command
    ///     arguments). Without one the client logs nothing (it never creates a logger of the global backend).
    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "quotakeeper.redis", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.configuration = configuration
        router = ClusterRouter(configuration: configuration, logger: logger)
    }

    /// Sends one command and returns its reply.
    /// - Throws: `RedisError` (an error reply is thrown as `.serverError` with Redis's message), or
    ///   `CancellationError` if the task is cancelled first.
    package func send(_ command: RedisCommand) async throws -> RedisReply {
        try Task.checkCancellation()
        let reply = try await router.execute(command)
        if case .error(let message) = reply {
            throw RedisError.errorReply(message, to: command.name)
        }
        return reply
    }

    /// Sends one command given as text arguments, e.g. `send(["HGET", key, field])`.
    package func send(_ arguments: [String]) async throws -> RedisReply {
        try await send(RedisCommand(arguments))
    }

    /// Sends one command given as text arguments, e.g. `send("PING")`.
    package func send(_ arguments: String...) async throws -> RedisReply {
        try await send(RedisCommand(arguments))
    }

    /// Sends several commands back to back and returns their replies in order.
    ///
    /// Error replies stay in the result as `.error` values; a connection failure, timeout or cancellation
    /// throws (commands before it may have run).
    package func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        try Task.checkCancellation()
        return try await router.pipeline(commands)
    }

    // MARK: Lifecycle

    /// Runs the client as a swift-service-lifecycle `Service` until graceful shutdown, cancellation or
    /// `shutdown()`, then stops it and returns once every thread of the client has exited (joined).
    ///
    /// The connection threads start in `init`, so `run()` is optional for simple callers. In a `ServiceGroup`,
    /// list the client before the services that use it: graceful shutdown ends them first, and the client
    /// last. Stopping fails queued commands with `.clientShutdown`; written ones get their replies within
    /// `timeouts.shutdownGrace`, after which sockets still being read are shut down.
    public func run() async throws {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await router.waitUntilStopped()
            } onGracefulShutdown: { [router] in
                router.beginShutdown()
            }
        } onCancel: {
            router.beginShutdown()
        }
    }

    /// Stops the client: queued commands fail with `.clientShutdown`, written ones get their replies (within
    /// `timeouts.shutdownGrace`), and this returns when every thread of the client has exited. Calling it
    /// again, or while `run()` runs, is fine.
    public func shutdown() async {
        router.beginShutdown()
        await router.waitUntilStopped()
    }
}

extension RedisClient: Service {}
