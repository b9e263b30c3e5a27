import CHiredis
import Glibc

/// One blocking hiredis connection: the only owner of its `redisContext`, freed in `deinit`.
///
/// Not `Sendable`: exactly one thread of the layer (a `ConnectionWorker`) creates, uses and frees it.
/// Every hiredis call reads `err`/`errstr`/`errno` in the same synchronous call that failed.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    private let endpoint: RedisConfiguration.Endpoint
    /// When `AUTH` last succeeded (IAM connections send it again before ElastiCache's 12-hour limit).
    private var authenticatedAt = ContinuousClock.now

    /// Connects, sets timeouts and keepalive, and runs the handshake (`AUTH`, `SELECT`, `PING`).
    /// - Throws: `RedisError` (`.connectionRefused`, `.connectionFailed`, `.timeout`, `.authenticationFailed`, ...).
    init(configuration: RedisConfiguration) throws(RedisError) {
        endpoint = configuration.endpoint
        let connectTimeout = chiredis_timeval_ms(Self.milliseconds(configuration.timeouts.connect))
        let connected: UnsafeMutablePointer<redisContext>?
        switch configuration.endpoint {
        case .tcp(let host, let port):
            connected = redisConnectWithTimeout(host, Int32(port), connectTimeout)
        case .unixSocket(let path):
            connected = redisConnectUnixWithTimeout(path, connectTimeout)
        }
        guard let connected else {
            throw RedisError(code: .connectionFailed, message: "cannot allocate a connection to \(endpoint)")
        }
        // From here on `deinit` frees the context on every path, including the throws below.
        context = connected
        if connected.pointee.err != 0 {
            throw Self.contextError(connected, endpoint: endpoint, during: "connecting")
        }
        if case .tcp = configuration.endpoint, configuration.tcpKeepAlive {
            _ = redisEnableKeepAlive(context)
        }
        // The handshake's reads are bounded by the connect timeout: a server that accepts but never answers
        // (paused with SIGSTOP, overloaded) must not hold this thread.
        guard redisSetTimeout(context, connectTimeout) == REDIS_OK else {
            throw Self.contextError(context, endpoint: endpoint, during: "setting the connect timeout")
        }
        try handshake(configuration)
        guard redisSetTimeout(context, chiredis_timeval_ms(Self.milliseconds(configuration.timeouts.command))) == REDIS_OK else {
            throw Self.contextError(context, endpoint: endpoint, during: "setting the command timeout")
        }
    }

    deinit {
        redisFree(context)
    }

    /// Appends a command to the output buffer (nothing is written to the socket yet).
    func append(_ command: RedisCommand) throws(RedisError) {
        let status = command.packedArguments.withUnsafeBufferPointer { bytes -> Int32 in
            let base = UnsafeRawPointer(bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(command.argumentLengths.count)
            var offset = 0
            for length in command.argumentLengths {
                pointers.append((base + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            return command.argumentLengths.withUnsafeBufferPointer { lengths in
                redisAppendCommandArgv(context, Int32(pointers.count), &pointers, lengths.baseAddress)
            }
        }
        guard status == REDIS_OK else { throw Self.contextError(context, endpoint: endpoint, during: "buffering a command") }
    }

    /// Reads the next reply, writing the output buffer first if it holds unsent commands.
    ///
    /// Error replies come back as `.error` values; only connection-level failures throw.
    func readReply() throws(RedisError) -> RedisReply {
        var raw: UnsafeMutablePointer<redisReply>?
        guard chiredis_get_reply(context, &raw) == REDIS_OK, let raw else {
            throw Self.contextError(context, endpoint: endpoint, during: "reading a reply")
        }
        defer { freeReplyObject(raw) }
        return Self.copy(raw)
    }

    /// Sends one command and waits for its reply (handshake use only; workers pipeline).
    private func roundTrip(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try append(RedisCommand(arguments))
        return try readReply()
    }

    private func handshake(_ configuration: RedisConfiguration) throws(RedisError) {
        try authenticate(configuration)
        if configuration.database != 0, case .error(let text) = try roundTrip(["SELECT", String(configuration.database)]) {
            throw RedisError(code: .serverError, message: "SELECT \(configuration.database) at \(endpoint) failed: \(text)")
        }
        if case .error(let text) = try roundTrip(["PING"]) {
            let code: RedisError.Code = text.hasPrefix("NOAUTH") ? .authenticationFailed : .serverError
            throw RedisError(code: code, message: "PING at \(endpoint) failed: \(text)")
        }
    }

    /// Sends `AUTH` with the configured password or a fresh IAM token (nothing without credentials).
    private func authenticate(_ configuration: RedisConfiguration) throws(RedisError) {
        guard let (username, password) = try configuration.credentialsForAuth() else { return }
        let arguments = username.map { ["AUTH", $0, password] } ?? ["AUTH", password]
        if case .error(let text) = try roundTrip(arguments) {
            let who = username.map { "user '\($0)'" } ?? "the default user"
            throw RedisError(code: .authenticationFailed, message: "authentication as \(who) at \(endpoint) failed: \(text)")
        }
        authenticatedAt = .now
    }

    /// With IAM authentication, sends `AUTH` again with a fresh token once the last one is
    /// `reauthenticateAfter` old (ElastiCache closes connections not re-authenticated within 12 hours).
    func reauthenticateIfDue(_ configuration: RedisConfiguration) throws(RedisError) {
        guard case .iam(let iam) = configuration.auth, ContinuousClock.now - authenticatedAt >= iam.reauthenticateAfter else { return }
        try authenticate(configuration)
    }

    /// Copies a hiredis reply tree into a `RedisReply`.
    private static func copy(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STATUS: return .status(text(value))
        case REDIS_REPLY_ERROR: return .error(text(value))
        case REDIS_REPLY_INTEGER: return .integer(Int64(value.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_STRING:
            guard let bytes = value.str, value.len > 0 else { return .bulkString([]) }
            return .bulkString(Array(UnsafeRawBufferPointer(start: bytes, count: value.len)))
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).map { copy(chiredis_reply_element(reply, $0)) })
        default:
            return .error("unknown hiredis reply type \(value.type)")
        }
    }

    private static func text(_ reply: redisReply) -> String {
        guard let bytes = reply.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: reply.len), as: UTF8.self)
    }

    /// Turns the context's `err`/`errstr` and the current `errno` into a typed error.
    private static func contextError(
        _ context: UnsafeMutablePointer<redisContext>, endpoint: RedisConfiguration.Endpoint, during step: String
    ) -> RedisError {
        let systemError = chiredis_errno()
        let kind = chiredis_context_error(context)
        let detail = String(cString: chiredis_context_error_string(context))
        let code: RedisError.Code
        switch kind {
        case REDIS_ERR_EOF: code = .connectionClosed
        case REDIS_ERR_PROTOCOL: code = .protocolError
        case REDIS_ERR_IO:
            switch systemError {
            case ECONNREFUSED, ENOENT: code = .connectionRefused
            case EAGAIN, EWOULDBLOCK, ETIMEDOUT, EINPROGRESS: code = .timeout
            case ECONNRESET, EPIPE: code = .connectionClosed
            default: code = step == "connecting" ? .connectionFailed : .connectionClosed
            }
        default:
            code = detail.mentionsTimeout ? .timeout : (step == "connecting" ? .connectionFailed : .connectionClosed)
        }
        let why = code == .timeout ? "timed out (\(detail))" : detail
        return RedisError(code: code, message: "Redis at \(endpoint): \(step) failed: \(why)")
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

extension String {
    fileprivate var mentionsTimeout: Bool {
        let text = lowercased()
        return text.contains("timed out") || text.contains("timeout")
    }
}
