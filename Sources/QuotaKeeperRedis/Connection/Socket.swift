import Glibc

/// One connected stream socket (TCP or Unix domain) owned by a connection thread; closed in `deinit`.
///
/// Blocking, with `SO_RCVTIMEO`/`SO_SNDTIMEO` bounding every read and write, so a stuck server can never
/// hold the owning thread longer than the timeout in effect.
final class Socket {
    let descriptor: Int32
    private let endpoint: RedisConfiguration.Endpoint
    private let watch: SocketWatch?

    /// Connects within `timeout` (a non-blocking `connect` and `poll`), trying every resolved address.
    /// - Throws: `.connectionRefused`, `.connectionFailed` or `.timeout`, naming the endpoint.
    /// Once connected, the socket is registered with `watch` (until `deinit`, just before it is closed).
    init(connectingTo endpoint: RedisConfiguration.Endpoint, timeout: Duration, keepAlive: Bool, watch: SocketWatch? = nil) throws(RedisError) {
        self.endpoint = endpoint
        self.watch = watch
        let deadline = monotonicNanoseconds() + UInt64(RedisConnection.milliseconds(timeout)) * 1_000_000
        switch endpoint {
        case .tcp(let host, let port):
            descriptor = try Self.connectTCP(host: host, port: port, deadline: deadline, endpoint: endpoint)
            var on: Int32 = 1
            setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            if keepAlive { setsockopt(descriptor, SOL_SOCKET, SO_KEEPALIVE, &on, socklen_t(MemoryLayout<Int32>.size)) }
        case .unixSocket(let path):
            descriptor = try Self.connectUnix(path: path, deadline: deadline, endpoint: endpoint)
        }
        watch?.queue.register(socket: descriptor, ofWorker: watch!.worker)
    }

    /// Linux's `POLLRDHUP` (the peer closed its side), which Glibc exports only under `_GNU_SOURCE`.
    private static let peerHangUp: Int16 = 0x2000

    deinit {
        if let watch { watch.queue.unregisterSocket(ofWorker: watch.worker) }
        close(descriptor)
    }

    /// Bounds every later read and write by `timeout`.
    func setTimeout(_ timeout: Duration) {
        let milliseconds = RedisConnection.milliseconds(timeout)
        var value = timeval(tv_sec: Int(milliseconds / 1000), tv_usec: Int((milliseconds % 1000) * 1000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Whether the server has closed or reset the connection (checked without blocking, before a write).
    ///
    /// Only hang-up and error events count: readable data alone (a TLS session ticket) does not.
    var peerHasClosed: Bool {
        var entry = pollfd(fd: descriptor, events: Self.peerHangUp, revents: 0)
        guard poll(&entry, 1, 0) > 0 else { return false }
        return entry.revents & (Self.peerHangUp | Int16(POLLHUP | POLLERR)) != 0
    }

    /// Reads at most `count` bytes; returns how many (never 0).
    /// - Throws: `.connectionClosed` at end of stream or on reset, `.timeout` after the read timeout.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(RedisError) -> Int {
        while true {
            let received = recv(descriptor, buffer, count, 0)
            if received > 0 { return received }
            if received == 0 { throw RedisError(code: .connectionClosed, message: "Redis at \(endpoint) closed the connection") }
            if errno == EINTR { continue }
            throw ioError(errno, during: "reading")
        }
    }

    /// Writes up to `count` bytes; returns how many were written (at least 1).
    func write(_ bytes: UnsafeRawPointer, count: Int) throws(RedisError) -> Int {
        while true {
            let sent = send(descriptor, bytes, count, Int32(MSG_NOSIGNAL))
            if sent > 0 { return sent }
            if sent < 0, errno == EINTR { continue }
            throw ioError(sent == 0 ? EPIPE : errno, during: "writing")
        }
    }

    /// A typed error for a failed read or write.
    func ioError(_ code: Int32, during step: String) -> RedisError {
        switch code {
        case EAGAIN, EWOULDBLOCK, ETIMEDOUT:
            return RedisError(code: .timeout, message: "Redis at \(endpoint): \(step) timed out")
        default:
            return RedisError(code: .connectionClosed, message: "Redis at \(endpoint): \(step) failed: \(String(cString: strerror(code)))")
        }
    }

    // MARK: Connecting

    private static func connectTCP(host: String, port: Int, deadline: UInt64, endpoint: RedisConfiguration.Endpoint) throws(RedisError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &results)
        guard status == 0, let first = results else {
            let why = status == 0 ? "no address" : String(cString: gai_strerror(status))
            throw RedisError(code: .connectionFailed, message: "Redis at \(endpoint): cannot resolve the host: \(why)")
        }
        defer { freeaddrinfo(results) }
        var lastError = RedisError(code: .connectionFailed, message: "Redis at \(endpoint): no usable address")
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let address = candidate {
            candidate = address.pointee.ai_next
            do throws(RedisError) {
                return try connect(
                    family: address.pointee.ai_family, address: address.pointee.ai_addr, length: address.pointee.ai_addrlen,
                    deadline: deadline, endpoint: endpoint)
            } catch {
                lastError = error
                if error.code == .timeout { break }
            }
        }
        throw lastError
    }

    private static func connectUnix(path: String, deadline: UInt64, endpoint: RedisConfiguration.Endpoint) throws(RedisError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            throw RedisError(code: .invalidURL, message: "the socket path \(path) is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
        }
        return try withUnsafePointer(to: &address) { (pointer) throws(RedisError) -> Int32 in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (socketAddress) throws(RedisError) -> Int32 in
                try connect(family: AF_UNIX, address: socketAddress, length: socklen_t(MemoryLayout<sockaddr_un>.size), deadline: deadline, endpoint: endpoint)
            }
        }
    }

    /// A non-blocking connect waited for with `poll` until `deadline`; the socket is blocking again on return.
    private static func connect(
        family: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, deadline: UInt64, endpoint: RedisConfiguration.Endpoint
    ) throws(RedisError) -> Int32 {
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw RedisError(code: .connectionFailed, message: "Redis at \(endpoint): socket() failed: \(String(cString: strerror(errno)))")
        }
        var success = false
        defer { if !success { close(descriptor) } }
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        if Glibc.connect(descriptor, address, length) != 0 {
            guard errno == EINPROGRESS else { throw connectError(errno, endpoint: endpoint) }
            var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            while true {
                let now = monotonicNanoseconds()
                guard now < deadline else {
                    throw RedisError(code: .timeout, message: "Redis at \(endpoint): connecting timed out")
                }
                let ready = poll(&entry, 1, Int32(max(1, (deadline - now) / 1_000_000)))
                if ready > 0 { break }
                if ready < 0, errno != EINTR { throw connectError(errno, endpoint: endpoint) }
            }
            var failure: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &failure, &size)
            if failure != 0 { throw connectError(failure, endpoint: endpoint) }
        }
        _ = fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK)
        success = true
        return descriptor
    }

    private static func connectError(_ code: Int32, endpoint: RedisConfiguration.Endpoint) -> RedisError {
        let kind: RedisError.Code
        switch code {
        case ECONNREFUSED, ENOENT: kind = .connectionRefused
        case ETIMEDOUT: kind = .timeout
        default: kind = .connectionFailed
        }
        return RedisError(code: kind, message: "Redis at \(endpoint): connecting failed: \(String(cString: strerror(code)))")
    }

}

/// A connection thread's socket slot in its `CommandQueue`: shutdown ends a read blocked on the registered
/// socket with `shutdown(2)` instead of waiting for its timeout.
struct SocketWatch: Sendable {
    let queue: CommandQueue
    let worker: Int
}
