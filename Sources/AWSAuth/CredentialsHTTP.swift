import Foundation
import TimeLimit
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The few HTTP exchanges of the credential sources (STS, the container endpoint, IMDS): one request, a
/// whole-request time limit, the status and body back. Bodies are never logged or put in error messages (they
/// carry secrets); messages name the URL and the status only.
struct CredentialsHTTP: Sendable {
    let timeout: Duration

    struct Response: Sendable {
        var status: Int
        var body: Data
    }

    /// Sends the request; throws `.endpointUnavailable` when it cannot be reached or answers too slowly.
    func send(_ request: URLRequest, what: String) async throws -> Response {
        var bounded = request
        bounded.timeoutInterval = max(1, Double(timeout.components.seconds) + 1)
        let prepared = bounded
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let limit = timeout
        do {
            let answer = try await withTimeLimit(limit) {
                let (data, response) = try await session.dataCancellingAsynchronously(for: prepared)
                return Response(status: (response as? HTTPURLResponse)?.statusCode ?? 0, body: data)
            }
            guard let answer else { throw URLError(.timedOut) }
            return answer
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw CredentialsError(
                code: .endpointUnavailable, message: "\(what) at \(Self.redacted(request.url)) did not answer within \(limit)",
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
