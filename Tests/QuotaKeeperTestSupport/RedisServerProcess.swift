import Foundation
import Synchronization
import Glibc

/// A private `redis-server` started by a test (for AUTH, pause and restart scenarios that must not touch
/// the shared test server): loopback only, no persistence, its own temporary directory.
public final class RedisServerProcess: Sendable {
    /// How the server listens.
    public enum Listener: Sendable {
        /// Plaintext on `port`.
        case plaintext
        /// TLS only on `port` (`--port 0 --tls-port`), with the test certificates' server pair unless another
        /// is given; client certificates optional unless required.
        case tls(TestCertificates, certificate: String? = nil, key: String? = nil, requireClientCertificates: Bool = false)
    }

    /// The TCP port it listens on.
    public let port: Int
    private let listener: Listener
    private let extraArguments: [String]
    private let directory: URL
    private let process: Mutex<BackgroundChildProcess?>

    /// Starts a server on a free loopback port and waits (without blocking a thread) until it accepts
    /// connections.
    /// - Parameters:
    ///   - arguments: extra `redis-server` arguments, e.g. `["--requirepass", "secret"]`.
    ///   - listener: plaintext (default) or TLS only.
    public init(arguments: [String] = [], listener: Listener = .plaintext) async throws {
        port = try Self.freePort()
        self.listener = listener
        extraArguments = arguments
        // Under QUOTAKEEPER_TEST_SERVERS_DIR when scripts/test sets it: its exit trap stops every server listed
        // there by pid file, so none outlives a test process that crashed.
        let base = ProcessInfo.processInfo.environment["QUOTAKEEPER_TEST_SERVERS_DIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        directory = base.appending(path: "qk-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process = Mutex(nil)
        try await start()
    }

    deinit {
        // The child's own deinit kills it (SIGCONT, SIGKILL) when the last reference goes.
        try? FileManager.default.removeItem(at: directory)
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS listener) with optional credentials.
    public func url(user: String? = nil, password: String? = nil, host: String = "127.0.0.1") -> String {
        let scheme: String
        if case .tls = listener { scheme = "rediss" } else { scheme = "redis" }
        switch (user, password) {
        case (let user?, let password?): return "\(scheme)://\(user):\(password)@\(host):\(port)"
        case (nil, let password?): return "\(scheme)://:\(password)@\(host):\(port)"
        default: return "\(scheme)://\(host):\(port)"
        }
    }

    /// Starts (or restarts) the server on the same port.
    public func start() async throws {
        let listenArguments: [String]
        switch listener {
        case .plaintext:
            listenArguments = ["--port", String(port)]
        case .tls(let certificates, let certificate, let key, let requireClientCertificates):
            listenArguments = certificates.serverArguments(
                port: port, certificate: certificate, key: key, requireClientCertificates: requireClientCertificates)
        }
        let arguments = listenArguments + [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory.path, "--pidfile", directory.appending(path: "redis.pid").path, "--loglevel", "warning",
        ] + extraArguments
        let server = try await BackgroundChildProcess(
            try Self.redisServerPath(), arguments: arguments, standardOutput: .discarded, standardError: .discarded)
        process.withLock { $0 = server }
        try await waitUntilAccepting()
    }

    /// Stops the server (SIGKILL, as a crash would) and waits for it to exit.
    public func stop() async {
        guard let server = process.withLock({ current -> BackgroundChildProcess? in defer { current = nil }; return current }) else { return }
        server.signal(SIGCONT)
        server.signal(SIGKILL)
        _ = try? await server.waitForExit()
        try? FileManager.default.removeItem(at: directory.appending(path: "redis.pid"))  // never kill a reused pid
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    public func pause() { signal(SIGSTOP) }

    /// Resumes a paused server (SIGCONT).
    public func resume() { signal(SIGCONT) }

    private func signal(_ number: Int32) {
        process.withLock { $0 }?.signal(number)
    }

    private func waitUntilAccepting() async throws {
        for _ in 0..<500 {
            if Self.canConnect(port: port) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestSupportError("redis-server did not start listening on 127.0.0.1:\(port)")
    }

    private static func redisServerPath() throws -> URL {
        let searchPath = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/usr/local/bin:/usr/sbin"
        for directory in searchPath.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appending(path: "redis-server")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSupportError("redis-server is not installed (apt-get install -y redis-server)")
    }

    /// A loopback port that was free a moment ago (the kernel picks it).
    public static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw TestSupportError("socket() failed") }
        defer { close(descriptor) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw TestSupportError("bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

/// A failure of the test harness itself (not of the code under test).
public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
