import AsyncHTTPClient
import Foundation

/// IAM roles for service accounts (EKS) and other OIDC federation: `AWS_WEB_IDENTITY_TOKEN_FILE` +
/// `AWS_ROLE_ARN` (+ optional `AWS_ROLE_SESSION_NAME`) exchanged for temporary credentials with STS
/// `AssumeRoleWithWebIdentity` (an unsigned `POST` of a form, answered in XML). The token file is read on
/// every exchange (the kubelet rotates it).
///
/// STS is `https://sts.<AWS_REGION>.amazonaws.com` (`https://sts.amazonaws.com` without a Region), or
/// `AWS_ENDPOINT_URL_STS` as in the AWS SDKs.
public struct WebIdentityCredentialsProvider: AWSCredentialsProvider {
    public let tokenFile: String
    public let roleARN: String
    public let sessionName: String
    public let endpoint: URL
    let http: CredentialsHTTP

    /// Reads `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`, `AWS_ENDPOINT_URL_STS`,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`; nil when the first two are not both set.
    /// - Parameters:
    ///   - environment: The variables to read.
    ///   - timeout: The longest exchange with STS.
    ///   - httpClient: The client to send with (`HTTPClient.shared` when nil).
    public init?(
        environment: [String: String] = ProcessInfo.processInfo.environment, timeout: Duration = .seconds(5),
        httpClient: HTTPClient? = nil
    ) {
        guard let file = environment["AWS_WEB_IDENTITY_TOKEN_FILE"], !file.isEmpty,
              let role = environment["AWS_ROLE_ARN"], !role.isEmpty
        else { return nil }
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"]
        let endpoint = environment["AWS_ENDPOINT_URL_STS"].flatMap(URL.init(string:))
            ?? URL(string: region.map { "https://sts.\($0).amazonaws.com" } ?? "https://sts.amazonaws.com")!
        self.init(tokenFile: file, roleARN: role, sessionName: environment["AWS_ROLE_SESSION_NAME"], endpoint: endpoint,
                  timeout: timeout, httpClient: httpClient)
    }

    /// Creates a provider.
    public init(
        tokenFile: String, roleARN: String, sessionName: String? = nil, endpoint: URL, timeout: Duration = .seconds(5),
        httpClient: HTTPClient? = nil
    ) {
        self.tokenFile = tokenFile
        self.roleARN = roleARN
        self.sessionName = sessionName.flatMap { $0.isEmpty ? nil : $0 } ?? "quotakeeper-\(Int(Date().timeIntervalSince1970))"
        self.endpoint = endpoint
        http = CredentialsHTTP(timeout: timeout, client: httpClient)
    }

    public func credentials() async throws -> AWSCredentials {
        let token: String
        do {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            throw CredentialsError(code: .invalidConfiguration, message: "cannot read AWS_WEB_IDENTITY_TOKEN_FILE \(tokenFile)",
                                   underlying: error)
        }
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
            ("RoleSessionName", sessionName), ("WebIdentityToken", token),
        ]
        let body = Data(form.map { "\($0.0)=\(SigV4Signer.uriEncode($0.1, keepSlash: false))" }.joined(separator: "&").utf8)
        let what = "STS AssumeRoleWithWebIdentity for \(roleARN)"
        let response = try await http.send(
            .POST, endpoint,
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Accept", "application/xml")],
            body: body, what: what)
        guard (200..<300).contains(response.status) else {
            let body = String(decoding: response.body, as: UTF8.self)
            let code = Self.element("Code", in: body).map { " (\($0))" } ?? ""
            let kind: CredentialsError.Code = [400, 401, 403].contains(response.status) ? .accessDenied : .endpointUnavailable
            throw CredentialsError(code: kind, message: "\(what) at \(CredentialsHTTP.redacted(endpoint)) answered HTTP \(response.status)\(code)")
        }
        return try Self.decode(response.body, what: what)
    }

    /// The `<Credentials>` of an `AssumeRoleWithWebIdentityResponse`.
    static func decode(_ data: Data, what: String) throws -> AWSCredentials {
        let body = String(decoding: data, as: UTF8.self)
        guard let id = element("AccessKeyId", in: body), let secret = element("SecretAccessKey", in: body),
              let token = element("SessionToken", in: body), let expiry = element("Expiration", in: body)
        else {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered without Credentials")
        }
        guard let expiration = CredentialsHTTP.date(expiry) else {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered an Expiration that is not ISO 8601")
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }

    /// The text of the first `<name>...</name>` element, XML entities decoded (STS's answers are flat enough).
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex)
        else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
