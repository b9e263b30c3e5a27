import Foundation

/// ElastiCache (Redis OSS 7+, Valkey) and MemoryDB IAM authentication: the `AUTH` password is a SigV4
/// presigned `GET https://<cache>/?Action=connect&User=<user>` (service `elasticache`, or `memorydb`; 15
/// minutes; `https://` stripped), signed with credentials of an IAM identity allowed `elasticache:Connect`.
///
/// A token authenticates connections for 15 minutes after it is made; a connection it opened stays
/// authenticated for at most 12 hours unless it sends `AUTH` again with a fresh token (QuotaKeeper's Redis
/// layer re-authenticates every connection well before that).
public struct ElastiCacheIAMToken: Sendable {
    /// The ElastiCache user id (also the Redis user name in `AUTH`).
    public var userID: String
    /// The replication group id or serverless cache name (lower case, as the console shows it).
    public var cacheName: String
    /// The cache's Region.
    public var region: String
    /// A serverless cache (adds `ResourceType=ServerlessCache`).
    public var serverless: Bool
    /// The signing name: `elasticache`, or `memorydb` for MemoryDB.
    public var service: String
    /// How long a token can open connections: 900 seconds, as AWS documents.
    public static let validity = 900

    /// Creates a token generator.
    public init(userID: String, cacheName: String, region: String, serverless: Bool = false, service: String = "elasticache") {
        self.userID = userID
        self.cacheName = cacheName
        self.region = region
        self.serverless = serverless
        self.service = service
    }

    /// The token for these credentials at `date`: `<cache>/?Action=connect&User=<user>&X-Amz-...`.
    public func token(credentials: AWSCredentials, date: Date = Date()) -> String {
        var parameters = [("Action", "connect"), ("User", userID)]
        if serverless { parameters.append(("ResourceType", "ServerlessCache")) }
        let query = SigV4Signer(service: service, region: region).presignedQuery(
            host: cacheName, parameters: parameters, credentials: credentials, date: date, expires: Self.validity)
        return "\(cacheName)/?\(query)"
    }
}
