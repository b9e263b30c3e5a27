import ChildProcesses
import Foundation
import Glibc
import Logging
import QuotaKeeper
import QuotaKeeperRedis
import Synchronization

/// The redis-server a fleet run with `--redis-fault` starts for itself (faults are never applied to a Redis the
/// user gave): loopback only, no persistence, its own folder under the temporary directory, and the faults.
final class FleetRedisServer: Sendable {
    let port: Int
    private let executable: URL
    private let directory: URL
    private let process: Mutex<BackgroundChildProcess?>
    /// The orchestrator's own connection for CLIENT KILL, SCRIPT FLUSH and the readiness PING.
    private let admin: RedisClient

    /// `redis://127.0.0.1:<port>`.
    var url: String { "redis://127.0.0.1:\(port)" }

    /// Starts redis-server (found on PATH) on a free loopback port and waits until it answers PING.
    /// - Throws: `FleetError.redisUnavailable` when redis-server is missing or does not come up.
    static func start(logger: Logger) async throws -> FleetRedisServer {
        let executable = try redisServerExecutable()
        var lastError: FleetError?
        // A port picked at random may be taken: redis-server then exits at once and the next one is tried.
        for _ in 0..<20 {
            let server = try FleetRedisServer(executable: executable, port: Int.random(in: 20_000..<60_000), logger: logger)
            do {
                try await server.launch()
                return server
            } catch let error as FleetError {
                lastError = error
                await server.stop()
            }
        }
        throw lastError ?? FleetError(.redisUnavailable, "redis-server did not start")
    }

    private init(executable: URL, port: Int, logger: Logger) throws {
        self.executable = executable
        self.port = port
        directory = FileManager.default.temporaryDirectory.appending(path: "qk-fleet-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process = Mutex(nil)
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(port)")
        configuration.timeouts.connect = .milliseconds(500)
        configuration.timeouts.command = .seconds(1)
        configuration.reconnect.initialBackoff = .milliseconds(10)
        configuration.reconnect.maximumBackoff = .milliseconds(100)
        admin = RedisClient(configuration: configuration, logger: logger)
    }

    /// Starts the server on its port (again, after `kill`) and waits up to 10 s until it answers PING.
    func launch() async throws {
        let server = try await BackgroundChildProcess(executable, arguments: [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path,
            "--pidfile", directory.appending(path: "redis.pid").path, "--loglevel", "warning",
        ])
        process.withLock { $0 = server }
        let giveUp = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < giveUp {
            if let status = server.exitStatus {
                throw FleetError(.redisUnavailable, "redis-server exited with status \(status) at start on port \(port)")
            }
            if (try? await admin.send(["PING"])) == .status("PONG") { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw FleetError(.redisUnavailable, "redis-server did not answer PING on 127.0.0.1:\(port) within 10 s")
    }

    /// SIGSTOP: connections stay open, nothing is answered.
    func pause() { process.withLock { $0 }?.signal(SIGSTOP) }

    /// SIGCONT.
    func resume() { process.withLock { $0 }?.signal(SIGCONT) }

    /// kill -9, as a crash: everything in memory (ledgers, scripts) is lost.
    func kill() async {
        if let server = process.withLock({ current -> BackgroundChildProcess? in defer { current = nil }; return current }) {
            server.signal(SIGCONT)  // resumed first if it was stopped, as a crash would find it
            server.signal(SIGKILL)
            _ = try? await server.waitForExit()
        }
        try? FileManager.default.removeItem(at: directory.appending(path: "redis.pid"))  // never name a reused pid
    }

    /// Sends `command` on the orchestrator's own connection (CLIENT KILL skips it).
    func send(_ command: [String]) async throws -> RedisReply {
        try await admin.send(command)
    }

    /// Kills the server and removes its folder.
    func stop() async {
        await kill()
        await admin.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    private static func redisServerExecutable() throws -> URL {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/usr/sbin:/usr/local/bin"
        for folder in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(folder)).appending(path: "redis-server")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw FleetError(.redisUnavailable, "--redis-fault needs redis-server on PATH to start a Redis of its own (apt-get install redis-server)")
    }
}

/// A fault as it was applied: wall seconds since the mode's start.
struct AppliedFault: Sendable {
    var fault: RedisFault
    var startedAt: Double
    var endedAt: Double
}

extension FleetRedisServer {
    /// Applies `faults` in order, each at its time after `modeStart`; returns when each began and ended.
    /// - Throws: `FleetError.redisUnavailable` when the server does not come back after a restart.
    func apply(_ faults: [RedisFault], modeStart: Date, logger: Logger) async throws -> [AppliedFault] {
        var applied: [AppliedFault] = []
        func now() -> Double { Date().timeIntervalSince(modeStart) }
        for fault in faults {
            let wait = fault.at - now()
            if wait > 0 { try await Task.sleep(for: .seconds(wait)) }
            let startedAt = now()
            logger.info("applying Redis fault \(fault) at \(String(format: "%.2f", startedAt)) s")
            switch fault.kind {
            case .pause:
                pause()
                defer { resume() }
                try await Task.sleep(for: .seconds(fault.duration))
            case .restart:
                await kill()
                try await Task.sleep(for: .seconds(fault.duration))
                try await launch()
            case .clientKill, .scriptFlush:
                let command = fault.kind == .clientKill ? ["CLIENT", "KILL", "TYPE", "normal"] : ["SCRIPT", "FLUSH"]
                do {
                    _ = try await send(command)
                } catch let error as RedisError {
                    throw FleetError(.redisUnavailable, "\(command.joined(separator: " ")) for fault \(fault) failed: \(error.message)")
                }
            }
            applied.append(AppliedFault(fault: fault, startedAt: startedAt, endedAt: now()))
        }
        return applied
    }
}
