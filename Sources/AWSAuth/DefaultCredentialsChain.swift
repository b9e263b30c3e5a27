import Foundation

/// The AWS SDKs' credential sources, in order: environment variables, the shared credentials file, web
/// identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` via STS), the profile's `credential_process`,
/// container credentials (ECS, EKS Pod Identity), and EC2 instance metadata (IMDSv2). A profile that assumes a
/// role (`role_arn`) or uses IAM Identity Center is not supported: it ends the search with `.unsupportedProfile`.
///
/// A source that is not set up here (no variable, no file, no profile, no metadata endpoint) is skipped; a
/// source that is set up but fails (STS answers 403, the process exits 1) ends the search with its error, so
/// a broken role is reported instead of silently replaced by another identity. The chain does not cache:
/// wrap it in a ``CachingCredentialsProvider`` (``BedrockRuntimeClient`` and the ElastiCache IAM
/// authentication do).
public struct DefaultCredentialsChain: AWSCredentialsProvider {
    let environment: [String: String]

    /// Creates the chain.
    /// - Parameter environment: The variables the sources read (the process environment by default).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// The sources set up in `environment`, in the chain's order (resolved on every call: a file or variable
    /// that appears later is found).
    func sources() throws -> [any AWSCredentialsProvider] {
        var sources: [any AWSCredentialsProvider] = [
            EnvironmentCredentialsProvider(environment: environment), SharedCredentialsFileProvider(environment: environment),
        ]
        if let unsupported = UnsupportedProfileProvider(environment: environment) { sources.append(unsupported) }
        if let webIdentity = WebIdentityCredentialsProvider(environment: environment) { sources.append(webIdentity) }
        if let process = ProcessCredentialsProvider(environment: environment) { sources.append(process) }
        if let container = try ContainerCredentialsProvider(environment: environment) { sources.append(container) }
        if let metadata = InstanceMetadataCredentialsProvider(environment: environment) { sources.append(metadata) }
        return sources
    }

    public func credentials() async throws -> AWSCredentials {
        var reasons: [String] = []
        for source in try sources() {
            do {
                return try await source.credentials()
            } catch let error as CredentialsError where error.code.meansNotConfigured {
                reasons.append(error.message)
            }
        }
        throw CredentialsError(code: .notFound, message: "no AWS credentials: " + reasons.joined(separator: "; "))
    }
}

/// Credentials resolved once and reused until shortly before they expire.
///
/// - Temporary credentials are refreshed `refreshBefore` their expiration, in the background: callers keep
///   getting the current ones, which are still valid, so no request ever fails for a refresh. If the refresh
///   fails, the current credentials are used until `minimumValidity` before they expire and the refresh is
///   tried again after `retryAfterFailure`; only then do callers wait for (and see the error of) a refresh.
/// - Credentials without an expiration (keys from the environment or a file) are resolved again after
///   `lifetime`, so a rotated file is picked up.
/// - Concurrent callers share one refresh: one in-flight task, whatever the number of callers.
public actor CachingCredentialsProvider: AWSCredentialsProvider {
    private let provider: any AWSCredentialsProvider
    private let refreshBefore: Duration
    private let minimumValidity: Duration
    private let lifetime: Duration
    private let retryAfterFailure: Duration
    private var cached: (credentials: AWSCredentials, resolvedAt: Date)?
    private var inFlight: Task<AWSCredentials, any Error>?
    private var lastFailure: Date?

    /// Creates a cache.
    /// - Parameters:
    ///   - provider: Where credentials come from (usually ``DefaultCredentialsChain``).
    ///   - refreshBefore: How long before expiration temporary credentials are refreshed (SDKs: 5 minutes).
    ///   - minimumValidity: Credentials closer than this to expiration are never handed out.
    ///   - lifetime: How long credentials without an expiration are reused.
    ///   - retryAfterFailure: The pause after a failed background refresh.
    public init(
        _ provider: any AWSCredentialsProvider, refreshBefore: Duration = .seconds(300), minimumValidity: Duration = .seconds(15),
        lifetime: Duration = .seconds(300), retryAfterFailure: Duration = .seconds(10)
    ) {
        self.provider = provider
        self.refreshBefore = refreshBefore
        self.minimumValidity = minimumValidity
        self.lifetime = lifetime
        self.retryAfterFailure = retryAfterFailure
    }

    public func credentials() async throws -> AWSCredentials {
        let now = Date()
        if let (credentials, resolvedAt) = cached {
            guard let expiration = credentials.expiration else {
                if now < resolvedAt + lifetime.timeInterval { return credentials }
                return try await refreshed().value
            }
            if now < expiration - refreshBefore.timeInterval { return credentials }
            if now < expiration - minimumValidity.timeInterval {
                if inFlight == nil, lastFailure.map({ now >= $0 + retryAfterFailure.timeInterval }) ?? true {
                    _ = refreshed()  // in the background; these credentials are still good
                }
                return credentials
            }
        }
        return try await refreshed().value
    }

    /// The in-flight refresh, started if there is none.
    private func refreshed() -> Task<AWSCredentials, any Error> {
        if let inFlight { return inFlight }
        let provider = self.provider
        let task = Task<AWSCredentials, any Error> {  // isolated to this actor; the provider's work runs elsewhere
            do {
                let fresh = try await provider.credentials()
                self.finished(with: fresh)
                return fresh
            } catch {
                self.finished(with: nil)
                throw error
            }
        }
        inFlight = task
        return task
    }

    private func finished(with credentials: AWSCredentials?) {
        inFlight = nil
        if let credentials {
            cached = (credentials, Date())
            lastFailure = nil
        } else {
            lastFailure = Date()
        }
    }
}

extension Duration {
    /// Seconds as a `TimeInterval`.
    var timeInterval: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
