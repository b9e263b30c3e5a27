import AsyncHTTPClient
import Foundation

/// ECS task roles and EKS Pod Identity: `GET` of `http://169.254.170.2` + `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`,
/// or of `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the `Authorization` header from
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read on every request; Pod Identity rotates it) or
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`. The answer is JSON: `AccessKeyId`, `SecretAccessKey`, `Token`,
/// `Expiration`.
///
/// As in the AWS SDKs, a full URI must be HTTPS, or HTTP to a loopback address or to the ECS / EKS link-local
/// hosts (169.254.170.2, 169.254.170.23, fd00:ec2::23): credentials are never fetched from anywhere else in
/// plain text.
public struct ContainerCredentialsProvider: AWSCredentialsProvider {
    public let url: URL
    let tokenFile: String?
    let token: String?
    let http: CredentialsHTTP

    /// The ECS agent's address for relative URIs.
    public static let ecsHost = "169.254.170.2"
    static let allowedHTTPHosts: Set<String> = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23", "[fd00:ec2::23]", "localhost"]

    /// Reads the environment; nil when neither URI variable is set.
    /// - Parameters:
    ///   - environment: The variables to read.
    ///   - timeout: The longest whole exchange.
    ///   - httpClient: The client to send with (`HTTPClient.shared` when nil).
    /// - Throws: `.invalidConfiguration` for a full URI that is not allowed or not a URL.
    public init?(
        environment: [String: String] = ProcessInfo.processInfo.environment, timeout: Duration = .seconds(2),
        httpClient: HTTPClient? = nil
    ) throws {
        let url: URL
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            guard let parsed = URL(string: "http://\(Self.ecsHost)" + (relative.hasPrefix("/") ? "" : "/") + relative) else {
                throw CredentialsError(code: .invalidConfiguration, message: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path")
            }
            url = parsed
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            guard let parsed = URL(string: full), parsed.host != nil else {
                throw CredentialsError(code: .invalidConfiguration, message: "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL")
            }
            guard Self.isAllowed(parsed) else {
                throw CredentialsError(
                    code: .invalidConfiguration,
                    message: "AWS_CONTAINER_CREDENTIALS_FULL_URI \(CredentialsHTTP.redacted(parsed)) must be https, or http to a loopback address or the ECS/EKS credentials host")
            }
            url = parsed
        } else {
            return nil
        }
        self.url = url
        tokenFile = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        http = CredentialsHTTP(timeout: timeout, client: httpClient)
    }

    static func isAllowed(_ url: URL) -> Bool {
        guard let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else { return false }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        if allowedHTTPHosts.contains(host) || host == "::1" || host == "[::1]" { return true }
        let octets = host.split(separator: ".")
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    public func credentials() async throws -> AWSCredentials {
        var headers = [("Accept", "application/json")]
        if let authorization = try authorization() { headers.append(("Authorization", authorization)) }
        let what = "the container credentials endpoint"
        let response = try await http.send(.GET, url, headers: headers, what: what)
        try CredentialsHTTP.requireSuccess(response, what: what, url: url)
        return try CredentialsHTTP.decodeCredentialsJSON(response.body, what: what)
    }

    private func authorization() throws -> String? {
        var value = token
        if let tokenFile {
            do {
                value = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw CredentialsError(code: .invalidConfiguration,
                                       message: "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(tokenFile)", underlying: error)
            }
        }
        if let value, value.contains(where: { $0 == "\r" || $0 == "\n" }) {
            throw CredentialsError(code: .invalidConfiguration, message: "the container authorization token contains a line break")
        }
        return value
    }
}

/// EC2 instance profiles through IMDSv2: `PUT /latest/api/token` (header
/// `X-aws-ec2-metadata-token-ttl-seconds`), then with `X-aws-ec2-metadata-token`, `GET
/// /latest/meta-data/iam/security-credentials/` for the role name and `GET .../<role>` for JSON credentials
/// (`Code`, `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`).
///
/// The endpoint is `http://169.254.169.254`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`; `AWS_EC2_METADATA_DISABLED=true`
/// turns the source off. An endpoint that cannot be reached means "not on EC2": `.notFound`, so the chain
/// reports it as one of the places it looked.
public struct InstanceMetadataCredentialsProvider: AWSCredentialsProvider {
    public let endpoint: URL
    let http: CredentialsHTTP

    /// Reads the environment; nil when `AWS_EC2_METADATA_DISABLED` is `true`.
    /// - Parameters:
    ///   - environment: The variables to read.
    ///   - timeout: The longest exchange (each of the three).
    ///   - httpClient: The client to send with (`HTTPClient.shared` when nil).
    public init?(
        environment: [String: String] = ProcessInfo.processInfo.environment, timeout: Duration = .seconds(1),
        httpClient: HTTPClient? = nil
    ) {
        if environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" { return nil }
        let endpoint = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { URL(string: $0) }
            ?? URL(string: "http://169.254.169.254")!
        self.init(endpoint: endpoint, timeout: timeout, httpClient: httpClient)
    }

    /// Creates a provider for an endpoint.
    public init(endpoint: URL, timeout: Duration = .seconds(1), httpClient: HTTPClient? = nil) {
        self.endpoint = endpoint
        http = CredentialsHTTP(timeout: timeout, client: httpClient)
    }

    public func credentials() async throws -> AWSCredentials {
        let what = "IMDS"
        let tokenURL = endpoint.appendingPathComponent("latest/api/token")
        let tokenResponse: CredentialsHTTP.Response
        do {
            tokenResponse = try await http.send(.PUT, tokenURL, headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], what: what)
        } catch let error as CredentialsError where error.code == .endpointUnavailable {
            throw CredentialsError(code: .notFound, message: "no EC2 instance metadata at \(endpoint) (not on EC2?)", underlying: error)
        }
        try CredentialsHTTP.requireSuccess(tokenResponse, what: "\(what) token", url: tokenURL)
        let token = String(decoding: tokenResponse.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)

        func get(_ path: String) async throws -> Data {
            let url = endpoint.appendingPathComponent(path)
            let response = try await http.send(.GET, url, headers: [("X-aws-ec2-metadata-token", token)], what: what)
            if response.status == 404 {
                throw CredentialsError(code: .notFound, message: "\(what): this instance has no IAM role (404 at \(url.path))")
            }
            try CredentialsHTTP.requireSuccess(response, what: what, url: url)
            return response.body
        }
        let roles = String(decoding: try await get("latest/meta-data/iam/security-credentials/"), as: UTF8.self)
        guard let role = roles.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw CredentialsError(code: .notFound, message: "\(what): this instance has no IAM role")
        }
        let data = try await get("latest/meta-data/iam/security-credentials/\(role)")
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let code = object["Code"] as? String,
           code != "Success" {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered Code \(code) for role \(role)")
        }
        return try CredentialsHTTP.decodeCredentialsJSON(data, what: "\(what) role \(role)")
    }
}
