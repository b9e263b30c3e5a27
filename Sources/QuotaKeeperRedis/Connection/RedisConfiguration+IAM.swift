import AWSAuth
import Foundation

extension RedisConfiguration {
    /// How connections authenticate.
    public enum Authentication: Sendable {
        /// `AUTH [username] password` with the configuration's fields (no `AUTH` without a password).
        case password
        /// ElastiCache / MemoryDB IAM: every connection sends `AUTH <user id> <fresh token>` and sends it again
        /// before `reauthenticateAfter`.
        case iam(IAMAuthentication)
    }

    /// ElastiCache IAM authentication: tokens signed with the AWS credential chain.
    public struct IAMAuthentication: Sendable {
        /// The user id, cache name and Region the token is made for.
        public var token: ElastiCacheIAMToken
        /// Where credentials come from (cached and refreshed before they expire).
        public var credentials: CachingCredentialsProvider
        /// A connection sends `AUTH` with a new token when its last one is this old (ElastiCache drops
        /// connections not re-authenticated within 12 hours).
        public var reauthenticateAfter: Duration = .seconds(10 * 3600)
        /// The time a token is signed at (the wall clock; tests fix it to make tokens predictable).
        public var now: @Sendable () -> Date = { Date() }

        /// Creates IAM authentication.
        /// - Parameters:
        ///   - token: User id, cache name, Region (and serverless) of the token.
        ///   - credentials: The credential source; the AWS SDKs' default chain by default.
        public init(token: ElastiCacheIAMToken, credentials: any AWSCredentialsProvider = DefaultCredentialsChain()) {
            self.token = token
            self.credentials = (credentials as? CachingCredentialsProvider) ?? CachingCredentialsProvider(credentials)
        }

        /// From a URL's query: `cache` (required), `region` (default `AWS_REGION` / `AWS_DEFAULT_REGION`),
        /// `serverless=true`.
        init(userID: String, query: [String: String],
             environment: [String: String] = ProcessInfo.processInfo.environment) throws(RedisError) {
            guard let cache = query["cache"], !cache.isEmpty else {
                throw RedisError(code: .invalidURL, message: "iam=true needs cache=<replication group id or serverless cache name>")
            }
            guard let region = query["region"] ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"], !region.isEmpty else {
                throw RedisError(code: .invalidURL, message: "iam=true needs region=<Region> (or AWS_REGION)")
            }
            self.init(token: ElastiCacheIAMToken(
                userID: userID, cacheName: cache, region: region, serverless: query["serverless"]?.lowercased() == "true"))
        }
    }

    /// The user and password `AUTH` sends at (re)connect: the configured ones, or the IAM user id and a token
    /// made now. Runs on a connection thread of the layer, which waits (at most the connect timeout) for the
    /// credentials; the cooperative pool is never blocked.
    func credentialsForAuth() throws(RedisError) -> (username: String?, password: String)? {
        switch auth {
        case .password:
            return password.map { (username, $0) }
        case .iam(let iam):
            let credentials = try Self.waitForCredentials(iam.credentials, timeout: timeouts.connect)
            return (iam.token.userID, iam.token.token(credentials: credentials, date: iam.now()))
        }
    }

    private static func waitForCredentials(_ provider: CachingCredentialsProvider, timeout: Duration) throws(RedisError) -> AWSCredentials {
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            do {
                outcome.set(.success(try await provider.credentials()))
            } catch {
                outcome.set(.failure(error))
            }
            done.signal()
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        guard done.wait(timeout: .now() + seconds) == .success, let result = outcome.value else {
            task.cancel()
            throw RedisError(code: .authenticationFailed, message: "no AWS credentials for the IAM token within \(timeout)")
        }
        switch result {
        case .success(let credentials): return credentials
        case .failure(let error):
            let message = (error as? CredentialsError)?.message ?? "\(error)"
            throw RedisError(code: .authenticationFailed, message: "no AWS credentials for the IAM token: \(message)")
        }
    }

    private final class Outcome: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Result<AWSCredentials, any Error>?
        var value: Result<AWSCredentials, any Error>? { lock.withLock { stored } }
        func set(_ result: Result<AWSCredentials, any Error>) { lock.withLock { stored = result } }
    }
}
