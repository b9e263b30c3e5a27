/// An error from the Redis layer: what went wrong, where, and the underlying cause.
///
/// Messages name the endpoint (`host:port` or the socket path) and never contain a password.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate let name: String
        private init(_ name: String) { self.name = name }

        /// The connection URL or configuration is malformed.
        public static let invalidURL = Code("invalidURL")
        /// Nothing listens at the address (`ECONNREFUSED`) or the socket path does not exist.
        public static let connectionRefused = Code("connectionRefused")
        /// The connection could not be made for another reason (name resolution, network unreachable).
        public static let connectionFailed = Code("connectionFailed")
        /// The server closed the connection, or the connection broke before the command was written.
        public static let connectionClosed = Code("connectionClosed")
        /// The connection broke after the command was written and before its reply: it may or may not have
        /// run. Safe to retry only when the command is idempotent. (Commands not written yet when a
        /// connection breaks are sent again on another or a new connection, never failed with this.)
        public static let connectionLostAfterWrite = Code("connectionLostAfterWrite")
        /// `AUTH` was refused: wrong password, unknown or disabled ACL user, or a password is required.
        public static let authenticationFailed = Code("authenticationFailed")
        /// No reply within the configured timeout. The command may or may not have run on the server.
        public static let timeout = Code("timeout")
        /// The server sent something that is not RESP2.
        public static let protocolError = Code("protocolError")
        /// The server answered with an error reply; `message` carries Redis's text.
        public static let serverError = Code("serverError")
        /// The ACL user may not run the command or touch the key (`NOPERM`); `message` names the command.
        public static let permissionDenied = Code("permissionDenied")
        /// Redis refused a write because it reached `maxmemory` with a `noeviction` policy (`OOM`): nothing was
        /// changed (a script is refused before its first write). `message` carries Redis's text.
        public static let outOfMemory = Code("outOfMemory")
        /// The server is a read-only replica (`READONLY`), e.g. a URL that names a replica or a master demoted by
        /// a failover: nothing was changed. `message` carries Redis's text.
        public static let readOnly = Code("readOnly")
        /// A script could not be loaded again after `NOSCRIPT`.
        public static let scriptMissing = Code("scriptMissing")
        /// `rediss://`: the server's certificate does not chain to a trusted CA (the system trust store, or
        /// the CA bundle configured), or it has expired.
        public static let tlsCertificateUntrusted = Code("tlsCertificateUntrusted")
        /// `rediss://`: the server's certificate is trusted but not issued for the host name or IP address
        /// connected to.
        public static let tlsHostNameMismatch = Code("tlsHostNameMismatch")
        /// `rediss://`: the TLS handshake failed otherwise: the port speaks plaintext, the server refused the
        /// client certificate, or no common protocol version.
        public static let tlsHandshakeFailed = Code("tlsHandshakeFailed")
        /// `redis://` to a port that accepts TLS only: the server dropped the plaintext connection.
        public static let tlsRequired = Code("tlsRequired")
        /// A TLS file (CA bundle, client certificate or key) cannot be read or does not fit.
        public static let tlsConfigurationInvalid = Code("tlsConfigurationInvalid")
        /// The client was shut down before the command completed.
        public static let clientShutdown = Code("clientShutdown")
        /// The caller passed an argument the layer refuses (for example an empty command).
        public static let invalidArgument = Code("invalidArgument")

        public var description: String { name }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable sentence saying what failed and where.
    public var message: String
    /// The underlying error, when there is one.
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(code: Code, message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "RedisError.\(code): \(message)" }

    /// The error for an error reply `text` to `command` (a command or script name): `.permissionDenied` for an
    /// ACL `NOPERM`, `.authenticationFailed` for `NOAUTH` / `WRONGPASS`, `.outOfMemory` for `OOM`, `.readOnly`
    /// for `READONLY`, else `.serverError`.
    public static func errorReply(_ text: String, to command: String) -> RedisError {
        if text.hasPrefix("NOPERM") {
            return RedisError(
                code: .permissionDenied,
                message: "the ACL user lacks the permission for \(command): \(text)")
        }
        if text.hasPrefix("OOM") {
            return RedisError(code: .outOfMemory, message: "\(command) refused: Redis reached maxmemory: \(text)")
        }
        if text.hasPrefix("READONLY") {
            return RedisError(code: .readOnly, message: "\(command) refused: the server is a read-only replica: \(text)")
        }
        let code: Code = text.hasPrefix("NOAUTH") || text.hasPrefix("WRONGPASS") ? .authenticationFailed : .serverError
        return RedisError(code: code, message: "\(command) failed: \(text)")
    }

    /// Whether the server may have executed the command although no reply arrived
    /// (a timeout or a connection that broke after the command was written).
    public var outcomeUnknown: Bool { code == .timeout || code == .connectionLostAfterWrite }
}
