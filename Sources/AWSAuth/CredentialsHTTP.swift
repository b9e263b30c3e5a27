import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// The few HTTP exchanges of the credential sources (STS, the container endpoint, IMDS): one request, a
/// whole-request deadline, the status and body back. Bodies are never logged or put in error messages (they
/// carry secrets); messages name the URL and the status only.
///
/// The exchanges go through `HTTPClient.shared` unless a source is given its own client: a handful of
/// requests an hour, to hosts other than Bedrock, from code that also runs without a Bedrock client (the
/// Redis layer's IAM authentication), so they need neither a pool of their own nor a lifecycle.
struct CredentialsHTTP: Sendable {
    let timeout: Duration
    let client: HTTPClient

    /// The largest credentials answer read (they are a few hundred bytes).
    static let maximumBodyBytes = 1 << 20

    struct Response: Sendable {
        var status: Int
        var body: Data
    }

    init(timeout: Duration, client: HTTPClient?) {
        self.timeout = timeout
        self.client = client ?? .shared
    }

    /// Sends a request to `url` and reads the whole answer within ``timeout``; throws `.endpointUnavailable`
    /// when it cannot be reached or answers too slowly, `CancellationError` when the calling task is cancelled.
    func send(
        _ method: HTTPMethod, _ url: URL, headers: [(String, String)] = [], body: Data? = nil, what: String
    ) async throws -> Response {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(data: body)) }
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        do {
            let response = try await client.execute(request, deadline: deadline)
            let body = try await response.body.collect(upTo: Self.maximumBodyBytes)
            return Response(status: Int(response.status.code), body: Data(buffer: body))
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw CredentialsError(
                code: .endpointUnavailable, message: "\(what) at \(Self.redacted(url)) did not answer within \(timeout)",
                underlying: error)
        }
    }

    /// Throws `.accessDenied` (401/403) or `.endpointUnavailable` (anything else) unless the status is 2xx.
    static func requireSuccess(_ response: Response, what: String, url: URL?) throws {
        guard !(200..<300).contains(response.status) else { return }
        let code: CredentialsError.Code = response.status == 401 || response.status == 403 ? .accessDenied : .endpointUnavailable
        throw CredentialsError(code: code, message: "\(what) at \(redacted(url)) answered HTTP \(response.status)")
    }

    /// Scheme, host, port and path only: query strings (STS's web identity token) never reach a message.
    static func redacted(_ url: URL?) -> String {
        guard let url, var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "<no url>" }
        components.query = nil
        components.user = nil
        components.password = nil
        return components.string ?? "<no url>"
    }

    /// An ISO 8601 time as the sources write it (`2026-11-28T08:00:00Z`, with or without fractional seconds).
    static func date(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        if let date = plain.date(from: text) { return date }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text)
    }

    /// The credentials JSON of the container endpoint, IMDS and `credential_process` (field names differ only
    /// in the token: `Token` or `SessionToken`).
    static func decodeCredentialsJSON(_ data: Data, what: String) throws -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let id = object["AccessKeyId"] as? String, !id.isEmpty,
              let secret = object["SecretAccessKey"] as? String, !secret.isEmpty
        else {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered without AccessKeyId and SecretAccessKey")
        }
        let token = (object["Token"] as? String) ?? (object["SessionToken"] as? String)
        var expiration: Date?
        if let text = object["Expiration"] as? String {
            guard let date = date(text) else {
                throw CredentialsError(code: .invalidResponse, message: "\(what) answered an Expiration that is not ISO 8601")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }
}
