import CHiredis
import Glibc
import TimeLimit

/// One blocking connection to Redis, plaintext or TLS: the layer's own `Socket` (and `TLSSession`), with
/// hiredis as the RESP codec only (`redisFormatCommandArgv` to encode, a `redisReader` to decode).
///
/// Not `Sendable`: exactly one thread of the layer (a `ConnectionWorker`) creates, uses and frees it.
final class RedisConnection {
    private let socket: Socket
    private let tls: TLSSession?
    private let reader: UnsafeMutablePointer<redisReader>
    private let endpoint: RedisConfiguration.Endpoint
    /// When `AUTH` last succeeded (IAM connections send it again before ElastiCache's 12-hour limit).
    private var authenticatedAt = ContinuousClock.now
    /// Encoded commands not written yet.
    private var output: [UInt8] = []
    /// Where each buffered command ends in `output`.
    private var commandEnds: [Int] = []
    private static let inputCapacity = 16 * 1024
    private let input = UnsafeMutableRawPointer.allocate(byteCount: inputCapacity, alignment: 8)

    /// A write that failed: its cause, and how many of the buffered commands may have reached the server
    /// (the ones after them certainly did not).
    struct WriteFailure: Error {
        var error: RedisError
        var possiblyWritten: Int
    }

    /// Connects, runs the TLS handshake when `tls` is given, sets timeouts, and runs the Redis handshake
    /// (`AUTH`, `SELECT`, `PING`).
    /// - Throws: `RedisError` (`.connectionRefused`, `.timeout`, `.authenticationFailed`, `.tlsRequired`,
    ///   `.tlsCertificateUntrusted`, `.tlsHostNameMismatch`, `.tlsHandshakeFailed`, ...).
    /// - Parameter watch: where the open socket is registered so the client's shutdown can end a blocking read.
    init(configuration: RedisConfiguration, tls context: TLSContext?, watch: SocketWatch? = nil) throws(RedisError) {
        endpoint = configuration.endpoint
        guard let reader = redisReaderCreate() else {
            throw RedisError(code: .connectionFailed, message: "cannot allocate a RESP reader for \(endpoint)")
        }
        // From here on `deinit` frees the reader, the buffer and the socket on every path.
        self.reader = reader
        socket = try Socket(
            connectingTo: endpoint, timeout: configuration.timeouts.connect, keepAlive: configuration.tcpKeepAlive, watch: watch)
        // The handshakes' reads are bounded by the connect timeout: a server that accepts but never answers
        // (paused with SIGSTOP, overloaded) must not hold this thread.
        socket.setTimeout(configuration.timeouts.connect)
        if let context {
            guard case .tcp(let host, _) = endpoint else {
                throw RedisError(code: .invalidURL, message: "TLS needs a TCP endpoint, not \(endpoint)")
            }
            tls = try TLSSession(context: context, socket: socket, host: host, endpoint: endpoint)
        } else {
            tls = nil
        }
        try handshake(configuration, overTLS: context != nil)
        socket.setTimeout(configuration.timeouts.command)
    }

    /// Connects as `init` does, but calls a plaintext connection closed at its first command `.tlsRequired` only
    /// when a second connection meets the same: a server being killed or restarted closes connections it
    /// accepted too, and the second try then finds the port refused (`.connectionRefused`) or the server back.
    static func open(configuration: RedisConfiguration, tls context: TLSContext?, watch: SocketWatch? = nil) throws(RedisError) -> RedisConnection {
        do throws(RedisError) {
            return try RedisConnection(configuration: configuration, tls: context, watch: watch)
        } catch where error.code == .tlsRequired {
            return try RedisConnection(configuration: configuration, tls: context, watch: watch)
        }
    }

    deinit {
        redisReaderFree(reader)
        input.deallocate()
    }

    /// Whether the server closed or reset the connection while it was idle (so nothing buffered now can
    /// have reached it).
    var peerHasClosed: Bool { socket.peerHasClosed }

    /// Whether bytes go through OpenSSL (whose writes can raise `SIGPIPE`) rather than `send`.
    var usesTLS: Bool { tls != nil }

    /// Encodes a command into the output buffer (nothing is written to the socket yet).
    func append(_ command: RedisCommand) throws(RedisError) {
        let length = command.packedArguments.withUnsafeBufferPointer { bytes -> Int32 in
            let base = UnsafeRawPointer(bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(command.argumentLengths.count)
            var offset = 0
            for length in command.argumentLengths {
                pointers.append((base + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            var encoded: UnsafeMutablePointer<CChar>?
            let length = command.argumentLengths.withUnsafeBufferPointer { lengths in
                redisFormatCommandArgv(&encoded, Int32(pointers.count), &pointers, lengths.baseAddress)
            }
            if let encoded {
                if length > 0 {
                    output.append(contentsOf: UnsafeRawBufferPointer(start: encoded, count: Int(length)))
                }
                redisFreeCommand(encoded)
            }
            return length
        }
        guard length > 0 else {
            throw RedisError(code: .invalidArgument, message: "the command \(command.name) cannot be encoded")
        }
        commandEnds.append(output.count)
    }

    /// Writes every buffered command.
    /// - Throws: `WriteFailure` saying how many of them may have reached the server.
    func flush() throws(WriteFailure) {
        defer {
            output.removeAll(keepingCapacity: true)
            commandEnds.removeAll(keepingCapacity: true)
        }
        var written = 0
        while written < output.count {
            let attempt = output.withUnsafeBytes { bytes in
                Result { () throws(RedisError) -> Int in try transmit(bytes.baseAddress! + written, count: bytes.count - written) }
            }
            switch attempt {
            case .success(let count):
                written += count
            case .failure(let error):
                // A failed plaintext send() wrote nothing of its call; a failed SSL_write may have sent part of a
                // record, so over TLS the command being written counts as possibly written too.
                let reached = tls == nil ? written : written + 1
                let starts = [0] + commandEnds.dropLast()
                let possiblyWritten = starts.filter { $0 < reached }.count
                throw WriteFailure(error: error, possiblyWritten: possiblyWritten)
            }
        }
    }

    /// One write over TLS or the plain socket.
    private func transmit(_ bytes: UnsafeRawPointer, count: Int) throws(RedisError) -> Int {
        if let tls { return try tls.write(bytes, count: count) }
        return try socket.write(bytes, count: count)
    }

    /// One read over TLS or the plain socket into the input buffer.
    private func receive() throws(RedisError) -> Int {
        if let tls { return try tls.read(into: input, count: Self.inputCapacity) }
        return try socket.read(into: input, count: Self.inputCapacity)
    }

    /// Reads the next reply, writing the output buffer first if it holds unsent commands.
    ///
    /// Error replies come back as `.error` values; only connection-level failures throw.
    func readReply() throws(RedisError) -> RedisReply {
        if !output.isEmpty {
            do throws(WriteFailure) { try flush() } catch { throw error.error }
        }
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
                let detail = withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                throw RedisError(code: .protocolError, message: "Redis at \(endpoint) sent something that is not RESP2: \(detail)")
            }
            if let raw {
                let reply = raw.assumingMemoryBound(to: redisReply.self)
                defer { freeReplyObject(reply) }
                return Self.copy(reply)
            }
            let received = try receive()
            guard redisReaderFeed(reader, input.assumingMemoryBound(to: CChar.self), received) == REDIS_OK else {
                throw RedisError(code: .protocolError, message: "Redis at \(endpoint): the RESP reader refused the input")
            }
        }
    }

    /// Sends one command and waits for its reply (handshake use only; workers pipeline).
    private func roundTrip(_ arguments: [String]) throws(RedisError) -> RedisReply {
        try append(RedisCommand(arguments))
        return try readReply()
    }

    private func handshake(_ configuration: RedisConfiguration, overTLS: Bool) throws(RedisError) {
        do throws(RedisError) {
            try authenticate(configuration)
        } catch where error.code == .connectionClosed {
            if overTLS {
                // TLS 1.3 servers refuse a missing or unknown client certificate after the client's handshake
                // ends: the first command meets the alert, or a reset if the server closed first.
                throw RedisError(
                    code: .tlsHandshakeFailed,
                    message: "Redis at \(endpoint) closed the TLS connection at the first command (\(error.message)): it may require a client certificate it trusts (--redis-tls-cert and --redis-tls-key)")
            }
            // A TLS port drops a plaintext client at its first bytes (not a timeout, not a Redis error reply).
            throw RedisError(
                code: .tlsRequired,
                message: "Redis at \(endpoint) closed the connection at the first command: it may accept TLS only (use rediss://)")
        }
        if configuration.database != 0, case .error(let text) = try roundTrip(["SELECT", String(configuration.database)]) {
            throw RedisError(code: .serverError, message: "SELECT \(configuration.database) at \(endpoint) failed: \(text)")
        }
    }

    /// The handshake's first round trip: `AUTH` when a password is configured (or a fresh IAM token), then `PING`.
    private func authenticate(_ configuration: RedisConfiguration) throws(RedisError) {
        if let (username, password) = try configuration.credentialsForAuth() {
            let arguments = username.map { ["AUTH", $0, password] } ?? ["AUTH", password]
            if case .error(let text) = try roundTrip(arguments) {
                let who = username.map { "user '\($0)'" } ?? "the default user"
                throw RedisError(
                    code: .authenticationFailed,
                    message: "authentication as \(who) at \(endpoint) failed: \(text)")
            }
            authenticatedAt = .now
        }
        if case .error(let text) = try roundTrip(["PING"]) {
            let code: RedisError.Code = text.hasPrefix("NOAUTH") ? .authenticationFailed : .serverError
            throw RedisError(code: code, message: "PING at \(endpoint) failed: \(text)")
        }
    }

    /// With IAM authentication, sends `AUTH` again with a fresh token once the last one is
    /// `reauthenticateAfter` old (ElastiCache closes connections not re-authenticated within 12 hours).
    func reauthenticateIfDue(_ configuration: RedisConfiguration) throws(RedisError) {
        guard isReauthenticationDue(configuration) else { return }
        try authenticate(configuration)
    }

    /// Whether the connection authenticates with IAM and its last token is `reauthenticateAfter` old.
    func isReauthenticationDue(_ configuration: RedisConfiguration) -> Bool {
        guard case .iam(let iam) = configuration.auth else { return false }
        return ContinuousClock.now - authenticatedAt >= iam.reauthenticateAfter
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

    /// Whole milliseconds, rounded down, at least 1 (a timeout of 0 would not wait at all).
    static func milliseconds(_ duration: Duration) -> Int64 {
        max(1, duration.millisecondsRoundedDown)
    }
}
