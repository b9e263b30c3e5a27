import Foundation
import Logging
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import ServiceLifecycle
import Testing

/// Scenarios that need a server of their own: credentials, a refused port, a frozen or restarted server.
@Suite("Redis failures against private servers")
struct RedisFailureTests {
    private func client(_ url: String, commandTimeout: Duration = .milliseconds(500)) throws -> RedisClient {
        var configuration = try RedisConfiguration(url: url)
        configuration.timeouts.command = commandTimeout
        configuration.timeouts.connect = .milliseconds(500)
        configuration.reconnect.initialBackoff = .milliseconds(20)
        configuration.reconnect.maximumBackoff = .milliseconds(200)
        return RedisClient(configuration: configuration)
    }

    @Test("AUTH with the right password works; a wrong or missing one is .authenticationFailed")
    func requirePass() async throws {
        let server = try await RedisServerProcess(arguments: ["--requirepass", "right-password"])
        let good = try client(server.url(password: "right-password"))
        #expect(try await good.send("PING") == .status("PONG"))
        await good.shutdown()

        let wrong = try client(server.url(password: "wrong-password"))
        let error = try await #require(throws: RedisError.self) { try await wrong.send("PING") }
        #expect(error.code == .authenticationFailed)
        #expect(error.message.contains("127.0.0.1:\(server.port)"))
        #expect(!error.message.contains("wrong-password"))
        await wrong.shutdown()

        let missing = try client(server.url())
        let noAuth = try await #require(throws: RedisError.self) { try await missing.send("PING") }
        #expect(noAuth.code == .authenticationFailed)
        await missing.shutdown()
    }

    @Test("an ACL user authenticates with AUTH user password; a disabled user does not")
    func aclUser() async throws {
        let server = try await RedisServerProcess()
        let admin = try client(server.url())
        _ = try await admin.send(["ACL", "SETUSER", "quota-app", "on", ">app-secret", "~{qk}*", "+@all"])
        _ = try await admin.send(["ACL", "SETUSER", "retired", "off", ">old-secret", "~*", "+@all"])
        await admin.shutdown()

        let user = try client(server.url(user: "quota-app", password: "app-secret"))
        #expect(try await user.send(["SET", "{qk}:x", "1"]) == .status("OK"))
        let denied = try await #require(throws: RedisError.self) { try await user.send(["SET", "other", "1"]) }
        #expect(denied.code == .permissionDenied)  // ACL NOPERM: a permission, not a server failure
        #expect(denied.message.contains("NOPERM"))
        await user.shutdown()

        let retired = try client(server.url(user: "retired", password: "old-secret"))
        let error = try await #require(throws: RedisError.self) { try await retired.send("PING") }
        #expect(error.code == .authenticationFailed)
        #expect(error.message.contains("user 'retired'"))
        await retired.shutdown()
    }

    @Test("a refused port fails fast with .connectionRefused naming host:port")
    func refusedPort() async throws {
        let port = try RedisServerProcess.freePort()
        let refused = try client("redis://127.0.0.1:\(port)", commandTimeout: .seconds(5))
        let started = ContinuousClock.now
        let error = try await #require(throws: RedisError.self) { try await refused.send("PING") }
        #expect(error.code == .connectionRefused)
        #expect(error.message.contains("127.0.0.1:\(port)"))
        #expect(ContinuousClock.now - started < .seconds(2), "must not wait for the 5 s command timeout")
        await refused.shutdown()
    }

    @Test("a paused server (SIGSTOP): commands time out within their bound, then recover on SIGCONT")
    func pausedServer() async throws {
        let server = try await RedisServerProcess()
        let paused = try client(server.url(), commandTimeout: .milliseconds(300))
        #expect(try await paused.send("PING") == .status("PONG"))
        server.pause()
        let started = ContinuousClock.now
        let results = await withTaskGroup(of: RedisError.Code?.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do {
                        _ = try await paused.send("PING")
                        return nil
                    } catch let error as RedisError {
                        return error.code
                    } catch {
                        return nil
                    }
                }
            }
            return await group.reduce(into: [RedisError.Code?]()) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - started
        #expect(results.allSatisfy { $0 == .timeout }, "\(results)")
        #expect(elapsed < .milliseconds(300 + 250), "timeouts fire within the bound, took \(elapsed)")
        server.resume()
        var recovered = false
        for _ in 0..<50 where !recovered {
            recovered = (try? await paused.send("PING")) == .status("PONG")
            if !recovered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(recovered)
        await paused.shutdown()
    }

    @Test("a cancelled caller stops waiting at once (long before the timeout), and the connection stays usable")
    func cancellation() async throws {
        let server = try await RedisServerProcess()
        let redis = try client(server.url(), commandTimeout: .seconds(10))
        _ = try await redis.send(["RPUSH", "{qk}:l", "x"])
        server.pause()
        let task = Task { try await redis.send("PING") }
        try await Task.sleep(for: .milliseconds(50))
        let clock = ContinuousClock()
        let started = clock.now
        task.cancel()
        let result = await task.result
        #expect(clock.now - started < .seconds(2), "cancellation, not the 10 s timeout, ended the wait")
        #expect(throws: CancellationError.self) { try result.get() }
        server.resume()
        #expect(try await redis.send(["LPOP", "{qk}:l"]).string == "x", "the written PING's reply was read and dropped")
        await redis.shutdown()
    }

    @Test("a new connection to a paused server: the handshake times out and shutdown still returns")
    func pausedDuringHandshake() async throws {
        let server = try await RedisServerProcess()
        server.pause()
        let paused = try client(server.url(), commandTimeout: .milliseconds(300))
        let clock = ContinuousClock()
        let started = clock.now
        let error = try await #require(throws: RedisError.self) { try await paused.send("PING") }
        #expect(error.code == .timeout)
        await paused.shutdown()
        #expect(clock.now - started < .seconds(3), "connect timeout 500 ms bounds the handshake; took \(clock.now - started)")
        server.resume()
    }

    @Test("a server killed and restarted: callers fail cleanly, the pool recovers, scripts reload")
    func restartedServer() async throws {
        let server = try await RedisServerProcess()
        let restarted = try client(server.url())
        let script = RedisScript(name: "test_echo", source: "return ARGV[1]")
        #expect(try await restarted.evalScript(script, keys: [], arguments: ["before"]).string == "before")
        await server.stop()
        let error = try await #require(throws: RedisError.self) { try await restarted.send("PING") }
        #expect([.connectionClosed, .connectionRefused].contains(error.code), "\(error)")
        try await server.start()
        var answer: String?
        for _ in 0..<100 where answer == nil {
            answer = try? await restarted.evalScript(script, keys: [], arguments: ["after"]).string
            if answer == nil { try await Task.sleep(for: .milliseconds(30)) }
        }
        #expect(answer == "after", "the script is reloaded on the new server's empty cache")
        await restarted.shutdown()
    }

    @Test("CLIENT KILL of idle connections: the next commands are re-sent on new connections, none fails")
    func clientKillIdle() async throws {
        let server = try await RedisServerProcess()
        let redis = try client(server.url())
        let admin = try client(server.url())
        for round in 0..<5 {
            // Both pooled connections carry a command, so both are open and idle when they are killed.
            _ = try await redis.pipeline([RedisCommand(["PING"]), RedisCommand(["PING"])])
            _ = try await admin.send(["CLIENT", "KILL", "TYPE", "normal"])
            let replies = try await withThrowingTaskGroup(of: RedisReply.self) { group in
                for _ in 0..<16 { group.addTask { try await redis.send(["ECHO", "round-\(round)"]) } }
                return try await group.reduce(into: [RedisReply]()) { $0.append($1) }
            }
            #expect(replies.allSatisfy { $0.string == "round-\(round)" })
        }
        await redis.shutdown()
        await admin.shutdown()
    }

    @Test("CLIENT KILL under 64 concurrent callers: only commands written before the kill fail, as .connectionLostAfterWrite")
    func clientKillUnderLoad() async throws {
        let server = try await RedisServerProcess()
        let redis = try client(server.url(), commandTimeout: .seconds(2))
        let admin = try client(server.url())
        try await Self.killConnections(under: redis, using: admin)
        await redis.shutdown()
        await admin.shutdown()
    }

    /// Kills every normal connection every 150 ms while 64 callers INCR counters of their own for 1.5 s, then
    /// checks that no caller saw an error other than `.connectionLostAfterWrite` and that each counter lies
    /// between the caller's successes and its successes plus its outcome-unknown commands.
    static func killConnections(under redis: RedisClient, using admin: RedisClient) async throws {
        let tag = TestRedis.uniqueTag("kill")
        let stop = ContinuousClock.now + .milliseconds(1500)
        async let kills: Int = {
            var kills = 0
            while ContinuousClock.now < stop - .milliseconds(300) {
                try? await Task.sleep(for: .milliseconds(150))
                kills += Int((try? await admin.send(["CLIENT", "KILL", "TYPE", "normal"]))?.integer ?? 0)
            }
            return kills
        }()
        let callers = await withTaskGroup(of: (key: String, succeeded: Int, lost: Int, other: [String]).self) { group in
            for caller in 0..<64 {
                group.addTask {
                    let key = "\(tag):\(caller)"
                    var succeeded = 0
                    var lost = 0
                    var other: [String] = []
                    while ContinuousClock.now < stop {
                        do {
                            _ = try await redis.send(["INCR", key])
                            succeeded += 1
                        } catch let error as RedisError where error.code == .connectionLostAfterWrite {
                            lost += 1
                        } catch {
                            other.append("\(error)")
                        }
                    }
                    return (key, succeeded, lost, other)
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(await kills >= 4, "connections were killed while the callers ran")
        #expect(callers.flatMap(\.other).isEmpty, "\(callers.flatMap(\.other).prefix(5))")
        for caller in callers {
            let counted = try await admin.send(["GET", caller.key]).integer ?? 0
            #expect(counted >= Int64(caller.succeeded) && counted <= Int64(caller.succeeded + caller.lost), "\(caller) counted \(counted)")
        }
        #expect(callers.map(\.succeeded).reduce(0, +) > 500)
        try await TestRedis.deleteKeys(matching: tag, using: admin)
    }

    @Test("run() returns after the task is cancelled, with every thread stopped; commands then fail as .clientShutdown")
    func runAsService() async throws {
        let server = try await RedisServerProcess()
        let redis = try client(server.url())
        let service = Task { try await redis.run() }
        #expect(try await redis.send("PING") == .status("PONG"))
        service.cancel()
        try await service.value
        let error = try await #require(throws: RedisError.self) { try await redis.send("PING") }
        #expect(error.code == .clientShutdown)
        await redis.shutdown()  // a second stop returns at once

        let stoppedByShutdown = try client(server.url())
        let running = Task { try await stoppedByShutdown.run() }
        await stoppedByShutdown.shutdown()
        try await running.value
    }

    @Test("in a ServiceGroup, graceful shutdown stops the client within its grace although a read waits on a paused server")
    func gracefulShutdownInServiceGroup() async throws {
        let server = try await RedisServerProcess()
        let redis = try client(server.url(), commandTimeout: .seconds(10))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [redis], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        let running = Task { try await group.run() }
        #expect(try await redis.send("PING") == .status("PONG"))
        server.pause()
        let unanswered = Task { try await redis.send("PING") }  // written; its thread blocks reading the reply
        try await Task.sleep(for: .milliseconds(100))
        let clock = ContinuousClock()
        let started = clock.now
        await group.triggerGracefulShutdown()
        try await running.value  // run() returned: every thread of the client has exited
        let elapsed = clock.now - started
        #expect(elapsed < .seconds(1), "100 ms of grace, then the socket is shut down; not the 10 s read timeout (took \(elapsed))")
        let lost = try await #require(throws: RedisError.self) { try await unanswered.value }
        #expect(lost.code == .connectionLostAfterWrite, "\(lost)")
        let refused = try await #require(throws: RedisError.self) { try await redis.send("PING") }
        #expect(refused.code == .clientShutdown)
        server.resume()
    }

    @Test("a Unix domain socket endpoint")
    func unixSocket() async throws {
        let socketPath = FileManager.default.temporaryDirectory.appending(path: "qk-\(UUID().uuidString.prefix(8)).sock").path
        let server = try await RedisServerProcess(arguments: ["--unixsocket", socketPath, "--unixsocketperm", "700"])
        let viaSocket = try client("unix://\(socketPath)?db=1")
        #expect(try await viaSocket.send(["SET", "{qk}:socket", "yes"]) == .status("OK"))
        await viaSocket.shutdown()
        let viaTCP = try client(server.url() + "/1")
        #expect(try await viaTCP.send(["GET", "{qk}:socket"]).string == "yes", "db=1 was selected")
        await viaTCP.shutdown()
    }
}
