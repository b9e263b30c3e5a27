#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Helpers for Swift over Debian's OpenSSL 3: its macro-shaped calls as plain functions.
   Every helper is prefixed copenssl_. No cryptography is implemented here. */

/** Refuses anything older than TLS 1.2. */
static inline int copenssl_ctx_require_tls12(SSL_CTX *context) {
    return (int)SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
}

/** Lets SSL_write return after writing part of the buffer, so the caller knows how much went out. */
static inline void copenssl_enable_partial_write(SSL_CTX *context) {
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/** Reports a peer's close without close_notify as an ordinary end of stream (RESP frames its own replies). */
static inline void copenssl_ignore_unexpected_eof(SSL_CTX *context) {
    SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

/** Sends the server name (SNI) in the ClientHello. */
static inline int copenssl_set_server_name(SSL *session, const char *name) {
    return (int)SSL_set_tlsext_host_name(session, name);
}

/** Requires the peer certificate to match an IP address (iPAddress SAN) instead of a host name. */
static inline int copenssl_expect_ip_address(SSL *session, const char *address) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(session), address);
}

/** The reason code of an OpenSSL error (a macro in OpenSSL 3). */
static inline int copenssl_error_reason(unsigned long error) {
    return ERR_GET_REASON(error);
}

#endif
