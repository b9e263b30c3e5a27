import AsyncHTTPClient
import BedrockErrors
import Foundation
import NIOCore

/// How a ``BedrockRuntimeClient`` reaches Bedrock.
public struct BedrockRuntimeConfiguration: Sendable {
    /// Time limits for one call (all exact to the nanosecond: the event loop's timers, not whole seconds).
    public struct Timeouts: Sendable {
        /// Longest time to open a connection (TCP, and TLS for https), and the longest a call waits for a
        /// pooled connection to come free when all ``Pool/maxConnectionsPerHost`` are busy. Over it: a
        /// `timeout` error when connecting, `too-many-connections` when waiting for the pool.
        public var connect: Duration = .seconds(10)
        /// Longest silence between bytes while waiting for an answer (the read timeout; covers a slow first
        /// token, never cuts a stream that keeps sending).
        public var idle: Duration = .seconds(60)
        /// Longest total time for one call, from the request to the last byte of the answer (a stream's
        /// included). A call given an earlier `deadline` ends at that deadline instead.
        public var total: Duration = .seconds(300)
        /// Creates timeouts.
        public init(connect: Duration = .seconds(10), idle: Duration = .seconds(60), total: Duration = .seconds(300)) {
            self.connect = connect
            self.idle = idle
            self.total = total
        }
    }

    /// The HTTP/1.1 connection pool (one per endpoint host; connections are kept alive and reused).
    public struct Pool: Sendable {
        /// Most concurrent connections to the endpoint: as many calls run at once, the rest wait for a
        /// connection (up to ``Timeouts/connect``). Too small a pool is the usual cause of 503 "Too many
        /// connections"; size it to the concurrency the service really runs.
        public var maxConnectionsPerHost: Int = 50
        /// How long an unused kept-alive connection stays open for the next call.
        public var idleTimeout: Duration = .seconds(60)
        /// Creates a pool configuration.
        public init(maxConnectionsPerHost: Int = 50, idleTimeout: Duration = .seconds(60)) {
            self.maxConnectionsPerHost = maxConnectionsPerHost
            self.idleTimeout = idleTimeout
        }
    }

    /// The Region (signing and the default endpoint).
    public var region: String
    /// Overrides `https://bedrock-runtime.<region>.amazonaws.com` (the simulator, a VPC endpoint).
    public var endpoint: URL?
    /// Where credentials come from: the AWS SDKs' chain by default (environment, shared file, web identity,
    /// `credential_process`, container, IMDS); temporary credentials are refreshed before they expire.
    public var credentials: any AWSCredentialsProvider = DefaultCredentialsChain()
    /// Call time limits.
    public var timeouts = Timeouts()
    /// Connection pool.
    public var pool = Pool()
    /// How error answers are classified (add message rules here).
    public var classifier = BedrockErrorClassifier()
    /// How long credentials without an expiration are reused before the provider is asked again.
    public var credentialsCacheDuration: Duration = .seconds(300)

    /// Creates a configuration.
    /// - Parameters:
    ///   - region: The Region, e.g. `us-east-1`.
    ///   - endpoint: An endpoint override, or nil for the public regional endpoint.
    public init(region: String, endpoint: URL? = nil) {
        self.region = region
        self.endpoint = endpoint
    }

    /// The endpoint in use.
    public var resolvedEndpoint: URL {
        endpoint ?? URL(string: "https://bedrock-runtime.\(region).amazonaws.com")!
    }

    /// The `HTTPClient` settings of ``pool`` and ``timeouts``, which a ``BedrockRuntimeClient`` makes its own
    /// client with (use them to make a shared one): HTTP/1.1 only with keep-alive, at most
    /// `pool.maxConnectionsPerHost` connections to the endpoint, `timeouts.connect` and `timeouts.idle` (read),
    /// TLS certificates verified (the default TLS configuration), no redirects followed (a signed request is
    /// never sent elsewhere), no decompression, and a refused connection failing the call at once (the call
    /// path decides about retries).
    public var httpClientConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(timeouts.connect), read: TimeAmount(timeouts.idle)),
            connectionPool: .init(idleTimeout: TimeAmount(pool.idleTimeout),
                                  concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, pool.maxConnectionsPerHost)),
            decompression: .disabled)
        configuration.httpVersion = .http1Only
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }
}
