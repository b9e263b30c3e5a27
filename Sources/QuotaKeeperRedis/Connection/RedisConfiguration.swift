import Foundation

/// Where and how to reach Redis: endpoint, TLS, credentials, database, timeouts, pool and reconnect policy.
public struct RedisConfiguration: Sendable {
    /// A TCP host and port, or a Unix domain socket.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)

        /// `host:port` or the socket path: safe to log (never carries credentials).
        public var description: String {
            switch self {
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): return path
            }
        }
    }

    /// How long each step may take.
    public struct Timeouts: Sendable {
        /// Connecting, including the `AUTH`/`SELECT`/`PING` handshake.
        public var connect: Duration = .seconds(2)
        /// From handing a command to the client until its reply: callers get `.timeout` after this.
        public var command: Duration = .seconds(1)
        /// How long `shutdown()` (or a graceful shutdown of `run()`) lets commands already written wait for
        /// their replies; then it shuts the sockets still being read down, so no thread waits out a stuck server.
        public var shutdownGrace: Duration = .milliseconds(100)
        public init() {}
    }

    /// The connections and the threads that own them.
    public struct Pool: Sendable {
        /// Connections, each owned by one thread of the layer; every one pipelines many callers.
        public var connections: Int = 2
        /// Most commands written in one batch (one write, one read).
        public var maximumBatch: Int = 512
        /// How long a connection thread keeps polling for the next command after a batch before it sleeps,
        /// at the price of that much CPU after each batch. Off (`.zero`) by default: a spinning thread is not
        /// idle, so callers cannot write on its connection themselves, and on busy cores it made latency
        /// worse (docs/benchmarks.md).
        public var spinBeforeSleep: Duration = .zero
        public init() {}
    }

    /// How a broken connection is re-established.
    public struct Reconnect: Sendable {
        /// The first wait after a failed attempt; doubles per failure, with full jitter.
        public var initialBackoff: Duration = .milliseconds(50)
        /// The longest wait between attempts.
        public var maximumBackoff: Duration = .seconds(2)
        public init() {}
    }

    /// TLS for `rediss://`: whom to trust, which client certificate to show. Verification is on by default.
    public struct TLS: Sendable, Hashable {
        /// Whether the server's certificate is checked.
        public enum Verification: Sendable, Hashable {
            /// The certificate must chain to a trusted CA and name the host (or IP address) connected to.
            case full
            /// No check at all: anyone on the path can impersonate the server and read every command.
            /// Only for throw-away test setups; never in production.
            case dangerouslyDisabled
        }

        /// A PEM bundle of the CAs to trust; `nil` means the system trust store.
        public var caFile: String?
        /// A PEM client certificate (chain) for mutual TLS; needs `privateKeyFile`.
        public var certificateFile: String?
        /// The PEM private key of `certificateFile`.
        public var privateKeyFile: String?
        /// The name sent as SNI and required in the certificate; `nil` means the host of the endpoint.
        public var serverName: String?
        /// `.full` unless explicitly and loudly turned off.
        public var verification: Verification = .full

        /// The environment variables that name TLS files (`caFile`, `certificateFile`, `privateKeyFile`).
        public static let caFileVariable = "QUOTAKEEPER_REDIS_TLS_CA"
        public static let certificateFileVariable = "QUOTAKEEPER_REDIS_TLS_CERT"
        public static let privateKeyFileVariable = "QUOTAKEEPER_REDIS_TLS_KEY"

        public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.privateKeyFile = privateKeyFile
        }

        /// Fills the files not set yet from `QUOTAKEEPER_REDIS_TLS_CA`, `_CERT` and `_KEY` (empty values ignored).
        public mutating func fillFromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
            func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            caFile = caFile ?? value(Self.caFileVariable)
            certificateFile = certificateFile ?? value(Self.certificateFileVariable)
            privateKeyFile = privateKeyFile ?? value(Self.privateKeyFileVariable)
        }
    }

    /// Where Redis is.
    public var endpoint: Endpoint
    /// TLS settings; `nil` for plaintext (`redis://`, `unix://`). `rediss://` sets it with verification on.
    public var tls: TLS?
    /// The ACL user for `AUTH user password`; `nil` means `AUTH password` (the default user).
    public var username: String?
    /// The password; never logged or shown in errors.
    public var password: String?
    /// `.password` (the two fields above) or `.iam(...)`: ElastiCache IAM tokens (RedisConfiguration+IAM.swift).
    public var auth: Authentication = .password
    /// The database selected after connecting.
    public var database: Int = 0
    /// Enables TCP keepalive on TCP connections.
    public var tcpKeepAlive: Bool = true
    public var timeouts = Timeouts()
    public var pool = Pool()
    public var reconnect = Reconnect()
    /// Cluster discovery and routing (see `ClusterMode`); `auto` by default.
    public var cluster: ClusterMode = .auto

    /// Creates a configuration for an endpoint.
    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS, same form) or
    /// `unix:///path/to/socket[?db=N]`; `?cluster=on|off|auto` chooses cluster discovery (see `ClusterMode`).
    ///
    /// `rediss://` verifies the server against the system trust store unless `tls.caFile` says otherwise
    /// (see `TLS.fillFromEnvironment`).
    ///
    /// ElastiCache IAM authentication: `redis://USER_ID@host:port?iam=true&cache=CACHE_NAME[&region=REGION]
    /// [&serverless=true]` (no password; the Region defaults to `AWS_REGION`, credentials come from the AWS
    /// SDKs' default chain).
    ///
    /// For sockets, credentials may be given as `unix://user:password@/path` or `?password=...&user=...`.
    /// - Throws: `RedisError` with code `.invalidURL` naming the problem (never echoing the password).
    public init(url: String) throws(RedisError) {
        func invalid(_ why: String) -> RedisError {
            RedisError(code: .invalidURL, message: "invalid Redis URL \(RedisConfiguration.redacted(url)): \(why)")
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw invalid("expected redis://[user:password@]host[:port][/db], rediss://... or unix:///path[?db=N]")
        }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        var username = components.user.flatMap { $0.isEmpty ? nil : $0 }
        var password = components.password
        switch scheme {
        case "redis", "rediss":
            guard var host = components.host, !host.isEmpty else { throw invalid("missing host") }
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let port = components.port ?? 6379
            guard (1...65535).contains(port) else { throw invalid("port \(port) is out of range 1-65535") }
            self.init(endpoint: .tcp(host: host, port: port))
            if scheme == "rediss" { tls = TLS() }
            let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            if !path.isEmpty {
                guard let database = Int(path), database >= 0 else {
                    throw invalid("database '\(path)' is not a non-negative integer")
                }
                self.database = database
            }
        case "unix":
            let path = components.path
            guard path.hasPrefix("/"), path.count > 1 else { throw invalid("missing absolute socket path") }
            self.init(endpoint: .unixSocket(path: path))
            if let db = query["db"] {
                guard let database = Int(db), database >= 0 else {
                    throw invalid("db '\(db)' is not a non-negative integer")
                }
                self.database = database
            }
            if let user = query["user"], !user.isEmpty { username = user }
            if let secret = query["password"] { password = secret }
        default:
            throw invalid("unsupported scheme '\(scheme)'; use redis://, rediss:// or unix://")
        }
        if let mode = query["cluster"] {
            guard let cluster = ClusterMode(rawValue: mode.lowercased()) else {
                throw invalid("cluster '\(mode)' is not one of on, off, auto")
            }
            self.cluster = cluster
        }
        if let iam = query["iam"], iam.lowercased() == "true" {
            guard let username, password == nil else { throw invalid("iam=true needs the IAM user id as the URL's user and no password") }
            do {
                auth = .iam(try IAMAuthentication(userID: username, query: query))
            } catch {
                throw invalid(error.message)
            }
        } else if username != nil, password == nil {
            throw invalid("user given without a password")
        }
        self.username = username
        self.password = password
    }

    /// Parses `url` as `init(url:)` does and, for `rediss://`, takes the TLS files from
    /// `QUOTAKEEPER_REDIS_TLS_CA`, `_CERT` and `_KEY` in `environment`: how the CLI and the fleet read their
    /// Redis settings (the CLI's `--redis-tls-*` flags then take precedence).
    public init(url: String, environment: [String: String]) throws(RedisError) {
        try self.init(url: url)
        tls?.fillFromEnvironment(environment)
    }

    /// The URL with any password replaced by `***`, for messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "'<unparseable>'" }
        if components.password != nil { components.password = "***" }
        if let items = components.queryItems, items.contains(where: { $0.name == "password" }) {
            components.queryItems = items.map { $0.name == "password" ? URLQueryItem(name: "password", value: "***") : $0 }
        }
        return "'\(components.string ?? "<unparseable>")'"
    }
}
