import COpenSSL
import Glibc

/// The TLS settings of one connection thread (an OpenSSL `SSL_CTX`): trust store or CA bundle, client
/// certificate, TLS 1.2 or later, peer verification on unless dangerously disabled. Freed in `deinit`.
///
/// Not `Sendable`: made, used and freed by one `ConnectionWorker`'s thread.
final class TLSContext {
    let context: OpaquePointer
    let settings: RedisConfiguration.TLS

    /// Loads the CA bundle (or the system trust store) and the client certificate and key.
    /// - Throws: `.tlsConfigurationInvalid` naming the file that could not be used and why.
    init(_ settings: RedisConfiguration.TLS) throws(RedisError) {
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw RedisError(code: .tlsConfigurationInvalid, message: "OpenSSL could not create a TLS context: \(Self.drainErrors())")
        }
        self.context = context
        self.settings = settings
        guard copenssl_ctx_require_tls12(context) == 1 else {
            throw RedisError(code: .tlsConfigurationInvalid, message: "OpenSSL refused TLS 1.2 as the minimum: \(Self.drainErrors())")
        }
        copenssl_enable_partial_write(context)
        copenssl_ignore_unexpected_eof(context)
        switch settings.verification {
        case .full:
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        case .dangerouslyDisabled:
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        if let caFile = settings.caFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                throw invalid("the CA bundle '\(caFile)' cannot be loaded")
            }
        } else if SSL_CTX_set_default_verify_paths(context) != 1 {
            throw invalid("the system trust store cannot be loaded")
        }
        switch (settings.certificateFile, settings.privateKeyFile) {
        case (nil, nil):
            break
        case (let certificate?, let key?):
            guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
                throw invalid("the client certificate '\(certificate)' cannot be loaded")
            }
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
                throw invalid("the client key '\(key)' cannot be loaded")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw invalid("the client key '\(key)' does not belong to the certificate '\(certificate)'")
            }
        default:
            throw RedisError(
                code: .tlsConfigurationInvalid,
                message: "mutual TLS needs both a client certificate and its key (--redis-tls-cert and --redis-tls-key)")
        }
    }

    deinit {
        SSL_CTX_free(context)
    }

    private func invalid(_ what: String) -> RedisError {
        RedisError(code: .tlsConfigurationInvalid, message: "\(what): \(Self.drainErrors())")
    }

    /// OpenSSL's queued error texts (and clears the queue), for messages.
    static func drainErrors() -> String {
        var texts: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            texts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return texts.isEmpty ? "no detail from OpenSSL" : texts.joined(separator: "; ")
    }
}

/// One TLS session over a connected `Socket` (an OpenSSL `SSL`), freed in `deinit`.
///
/// Reads and writes are blocking and bounded by the socket's timeouts, like the plaintext path.
final class TLSSession {
    private let session: OpaquePointer
    private let socket: Socket
    private let endpoint: RedisConfiguration.Endpoint

    /// Runs the TLS handshake: SNI and host-name (or IP address) verification against `host`.
    /// - Throws: `.tlsCertificateUntrusted`, `.tlsHostNameMismatch`, `.tlsHandshakeFailed` or `.timeout`.
    init(context: TLSContext, socket: Socket, host: String, endpoint: RedisConfiguration.Endpoint) throws(RedisError) {
        guard let session = SSL_new(context.context) else {
            throw RedisError(code: .tlsHandshakeFailed, message: "OpenSSL could not create a TLS session: \(TLSContext.drainErrors())")
        }
        self.session = session
        self.socket = socket
        self.endpoint = endpoint
        ERR_clear_error()
        SSL_set_fd(session, socket.descriptor)
        let expected = context.settings.serverName ?? host
        if Self.isIPAddress(expected) {
            if context.settings.verification == .full { _ = copenssl_expect_ip_address(session, expected) }
        } else {
            _ = copenssl_set_server_name(session, expected)
            if context.settings.verification == .full { _ = SSL_set1_host(session, expected) }
        }
        let status = SSL_connect(session)
        guard status == 1 else { throw handshakeError(status: status, expected: expected) }
    }

    deinit {
        SSL_free(session)
    }

    /// Reads at most `count` decrypted bytes; returns how many (never 0).
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(RedisError) -> Int {
        ERR_clear_error()
        let received = SSL_read(session, buffer, Int32(min(count, Int(Int32.max))))
        if received > 0 { return Int(received) }
        throw ioError(status: received, during: "reading")
    }

    /// Writes up to `count` bytes (one or more TLS records); returns how many were accepted.
    func write(_ bytes: UnsafeRawPointer, count: Int) throws(RedisError) -> Int {
        ERR_clear_error()
        let sent = SSL_write(session, bytes, Int32(min(count, Int(Int32.max))))
        if sent > 0 { return Int(sent) }
        throw ioError(status: sent, during: "writing")
    }

    private func ioError(status: Int32, during step: String) -> RedisError {
        let systemError = errno
        switch SSL_get_error(session, status) {
        case SSL_ERROR_ZERO_RETURN:
            return RedisError(code: .connectionClosed, message: "Redis at \(endpoint) closed the TLS connection")
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return RedisError(code: .timeout, message: "Redis at \(endpoint): \(step) timed out")
        case SSL_ERROR_SYSCALL:
            if systemError == 0 || (ERR_peek_error() == 0 && status == 0) {
                return RedisError(code: .connectionClosed, message: "Redis at \(endpoint) closed the connection")
            }
            return socket.ioError(systemError, during: step)
        default:
            let detail = TLSContext.drainErrors()
            var message = "Redis at \(endpoint): TLS \(step) failed: \(detail)"
            if detail.contains("certificate required") || detail.contains("unknown ca") || detail.contains("bad certificate") {
                message += " (the server requires a client certificate it trusts: --redis-tls-cert and --redis-tls-key)"
            }
            // A TLS alert (also one the server sends after TLS 1.3's handshake, refusing a client certificate)
            // is a handshake problem; any other TLS failure on an established connection just breaks it.
            let code: RedisError.Code = step == "handshake" || detail.contains("alert") ? .tlsHandshakeFailed : .connectionClosed
            return RedisError(code: code, message: message)
        }
    }

    private func handshakeError(status: Int32, expected: String) -> RedisError {
        let verdict = SSL_get_verify_result(session)
        if verdict != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verdict))
            _ = TLSContext.drainErrors()
            if verdict == X509_V_ERR_HOSTNAME_MISMATCH || verdict == X509_V_ERR_IP_ADDRESS_MISMATCH {
                return RedisError(
                    code: .tlsHostNameMismatch,
                    message: "Redis at \(endpoint): the server's certificate is not valid for '\(expected)' (\(reason))")
            }
            return RedisError(
                code: .tlsCertificateUntrusted,
                message: "Redis at \(endpoint): the server's certificate is not trusted (\(reason)); give the CA that issued it with --redis-tls-ca or QUOTAKEEPER_REDIS_TLS_CA")
        }
        var error = ioError(status: status, during: "handshake")
        switch error.code {
        case .timeout:
            error = RedisError(
                code: .tlsHandshakeFailed,
                message: "Redis at \(endpoint): no TLS answer within the connect timeout (a plaintext port? use redis://)")
        case .connectionClosed:
            error.code = .tlsHandshakeFailed
            error.message += " during the TLS handshake"
        default:
            if error.message.contains("wrong version number") || error.message.contains("packet length too long")
                || error.message.contains("record layer failure")
            {
                error.message += " (the server did not answer in TLS: a plaintext port? use redis://)"
            }
        }
        return error
    }

    private static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
