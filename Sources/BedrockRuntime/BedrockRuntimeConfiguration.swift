import BedrockErrors
import Foundation

/// How a ``BedrockRuntimeClient`` reaches Bedrock.
public struct BedrockRuntimeConfiguration: Sendable {
    /// Time limits for one call.
    public struct Timeouts: Sendable {
        /// Longest silence between bytes while waiting for an answer (covers a slow first token). Applied by
        /// URLSession, which on Linux rounds it up to whole seconds.
        public var idle: Duration = .seconds(60)
        /// Longest total time for one call, connect to last byte (enforced precisely by the client).
        public var total: Duration = .seconds(300)
        /// Creates timeouts.
        public init(idle: Duration = .seconds(60), total: Duration = .seconds(300)) {
            self.idle = idle
            self.total = total
        }
    }

    /// The HTTP connection pool.
    public struct Pool: Sendable {
        /// Most concurrent connections to the endpoint. Too small a pool is the usual cause of 503
        /// "Too many connections"; size it to the concurrency the service really runs.
        public var maxConnectionsPerHost: Int = 50
        /// Creates a pool configuration.
        public init(maxConnectionsPerHost: Int = 50) { self.maxConnectionsPerHost = maxConnectionsPerHost }
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
}
