import Crypto
import Foundation

/// AWS Signature Version 4 (header form) for non-S3 services.
///
/// The path is given as it goes on the wire (already percent-encoded once) and is encoded again for
/// the canonical request, as every service except S3 expects. So a Bedrock model id `a.b:0`, sent as
/// `/model/a.b%3A0/converse`, is signed as `/model/a.b%253A0/converse`. Paths are normalised (`.`, `..` and
/// empty segments removed) before signing.
public struct SigV4Signer: Sendable {
    /// An HTTP request to sign.
    public struct Request: Sendable, Hashable {
        /// `GET`, `POST`, ...
        public var method: String
        /// The path as sent (percent-encoded), e.g. `/model/a.b%3A0/converse`.
        public var path: String
        /// The raw query string without `?` (may be empty).
        public var query: String
        /// Headers to sign (name, value). Include `Host`; `X-Amz-Date` (and the token) are added by ``sign(_:credentials:date:)``.
        public var headers: [Header]
        /// The payload.
        public var body: Data

        /// Creates a request.
        public init(method: String, path: String, query: String = "", headers: [Header], body: Data = Data()) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }

        /// The value of the first header with this name (case-insensitive).
        public func header(_ name: String) -> String? {
            headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }
    }

    /// A header name and value.
    public struct Header: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The signing name (`bedrock` for bedrock-runtime).
    public var service: String
    /// The Region of the endpoint, e.g. `us-east-1`.
    public var region: String

    /// Creates a signer.
    /// - Parameters:
    ///   - service: The signing name; `bedrock` for Bedrock Runtime.
    ///   - region: The Region.
    public init(service: String = "bedrock", region: String) {
        self.service = service
        self.region = region
    }

    /// Adds `X-Amz-Date`, `X-Amz-Security-Token` (with session credentials) and `Authorization`.
    /// - Parameters:
    ///   - request: The request; its headers must include `Host`.
    ///   - credentials: The key pair (and session token).
    ///   - date: The signing time.
    /// - Returns: The request with the signing headers added.
    public func sign(_ request: Request, credentials: AWSCredentials, date: Date) -> Request {
        var signed = request
        signed.headers.removeAll {
            ["x-amz-date", "authorization", "x-amz-security-token"].contains($0.name.lowercased())
        }
        signed.headers.append(Header("X-Amz-Date", Self.amzDate(date)))
        if let token = credentials.sessionToken {
            signed.headers.append(Header("X-Amz-Security-Token", token))
        }
        signed.headers.append(Header("Authorization", authorization(for: signed, credentials: credentials, date: date)))
        return signed
    }

    /// The `Authorization` header value for a request that already carries `X-Amz-Date` (and the token).
    public func authorization(for request: Request, credentials: AWSCredentials, date: Date) -> String {
        let (_, signedHeaders) = Self.canonicalHeaders(request.headers)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope(date)), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature(for: request, credentials: credentials, date: date))"
    }

    /// The hex signature of a request.
    public func signature(for request: Request, credentials: AWSCredentials, date: Date) -> String {
        signature(canonicalRequest: canonicalRequest(request), credentials: credentials, date: date)
    }

    private func signature(canonicalRequest: String, credentials: AWSCredentials, date: Date) -> String {
        let key = signingKey(secretAccessKey: credentials.secretAccessKey, date: date)
        let toSign = stringToSign(canonicalRequest: canonicalRequest, date: date)
        return Self.hex(HMAC<SHA256>.authenticationCode(for: Data(toSign.utf8), using: key))
    }

    /// The canonical request: method, URI, query, headers, signed headers, payload hash.
    public func canonicalRequest(_ request: Request) -> String {
        let (headers, signedHeaders) = Self.canonicalHeaders(request.headers)
        return [
            request.method.uppercased(),
            Self.canonicalURI(request.path),
            Self.canonicalQuery(request.query),
            headers,
            signedHeaders,
            Self.hex(SHA256.hash(data: request.body)),
        ].joined(separator: "\n")
    }

    /// A presigned URL's query string (SigV4 query form, empty payload, only `host` signed), as botocore's
    /// `SigV4QueryAuth` writes it: `parameters` in the given order, then `X-Amz-Algorithm`, `X-Amz-Credential`,
    /// `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token` (session credentials)
    /// and `X-Amz-Signature`.
    /// - Parameters:
    ///   - host: The `Host` the URL names (signed).
    ///   - path: The path (`/`).
    ///   - parameters: The request's own query parameters (unencoded).
    ///   - expires: Seconds the URL stays valid (`X-Amz-Expires`).
    public func presignedQuery(
        method: String = "GET", host: String, path: String = "/", parameters: [(String, String)], credentials: AWSCredentials,
        date: Date, expires: Int
    ) -> String {
        var query = parameters
        query.append(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))
        query.append(("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope(date))"))
        query.append(("X-Amz-Date", Self.amzDate(date)))
        query.append(("X-Amz-Expires", String(expires)))
        query.append(("X-Amz-SignedHeaders", "host"))
        if let token = credentials.sessionToken { query.append(("X-Amz-Security-Token", token)) }
        let encoded = query.map { "\(Self.uriEncode($0.0, keepSlash: false))=\(Self.uriEncode($0.1, keepSlash: false))" }
            .joined(separator: "&")
        let request = Request(method: method, path: path, query: encoded, headers: [Header("Host", host)])
        let signature = signature(
            canonicalRequest: canonicalRequest(request), credentials: credentials, date: date)
        return encoded + "&X-Amz-Signature=" + signature
    }

    /// `AWS4-HMAC-SHA256`, the date, the scope and the canonical request's hash.
    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        [
            "AWS4-HMAC-SHA256",
            Self.amzDate(date),
            scope(date),
            Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8))),
        ].joined(separator: "\n")
    }

    /// `yyyyMMdd/region/service/aws4_request`.
    public func scope(_ date: Date) -> String {
        "\(Self.amzDate(date).prefix(8))/\(region)/\(service)/aws4_request"
    }

    private func signingKey(secretAccessKey: String, date: Date) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ text: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key)))
        }
        let dateKey = hmac(SymmetricKey(data: Data("AWS4\(secretAccessKey)".utf8)), String(Self.amzDate(date).prefix(8)))
        return hmac(hmac(hmac(dateKey, region), service), "aws4_request")
    }

    // MARK: - Canonical forms

    /// The path normalised and URI-encoded (again), keeping `/`.
    public static func canonicalURI(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        var normalised = "/" + segments.joined(separator: "/")
        if path.hasSuffix("/"), normalised != "/" { normalised += "/" }
        return uriEncode(normalised, keepSlash: true)
    }

    /// Query parameters decoded, re-encoded and sorted by name then value.
    public static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&", omittingEmptySubsequences: true).map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func encoded(_ part: Substring) -> String {
                let raw = String(part)
                return uriEncode(raw.removingPercentEncoding ?? raw, keepSlash: false)
            }
            return (encoded(parts[0]), parts.count > 1 ? encoded(parts[1]) : "")
        }
        return pairs.sorted { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Lower-cased names, trimmed values with inner runs of spaces collapsed, repeated headers joined by `,`,
    /// sorted by name; returns the block (each line ending in a newline) and the `;`-joined names.
    public static func canonicalHeaders(_ headers: [Header]) -> (canonical: String, signed: String) {
        var byName: [String: [String]] = [:]
        for header in headers {
            let value = header.value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            byName[header.name.lowercased(), default: []].append(value)
        }
        let names = byName.keys.sorted()
        let canonical = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    /// RFC 3986 encoding: everything except `A-Za-z0-9-._~` (and `/` if asked) as `%XX`, upper-case hex.
    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
