import FlyingFox
import Foundation

/// A loopback HTTP server standing in for STS, the container credentials endpoint or IMDS: each request is
/// recorded and answered by `respond` (status, body).
final class StubCredentialsServer: Sendable {
    struct Recorded: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
    }

    private let server: HTTPServer
    private let task: Task<Void, any Error>
    private let log = Locked<[Recorded]>([])
    let url: URL

    init(_ respond: @escaping @Sendable (Recorded) async -> (Int, String)) async throws {
        let log = self.log
        let server = HTTPServer(
            config: HTTPServer.Configuration(address: try .inet(ip4: "127.0.0.1", port: 0), timeout: 30, logger: .disabled),
            handler: ClosureHTTPHandler { request in
                var headers: [String: String] = [:]
                for (name, value) in request.headers { headers[name.rawValue.lowercased()] = value }
                let recorded = Recorded(
                    method: request.method.rawValue, path: request.path, headers: headers,
                    body: String(decoding: (try? await request.bodyData) ?? Data(), as: UTF8.self))
                log.withLock { $0.append(recorded) }
                let (status, body) = await respond(recorded)
                return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: "Stub"), body: Data(body.utf8))
            })
        self.server = server
        task = Task { try await server.run() }
        try await server.waitUntilListening(timeout: 5)
        guard case .ip4(_, let port)? = await server.listeningAddress else { throw URLError(.cannotConnectToHost) }
        url = URL(string: "http://127.0.0.1:\(port)")!
    }

    var requests: [Recorded] { log.withLock { $0 } }

    func stop() async {
        await server.stop(timeout: 0.2)
        task.cancel()
    }
}

/// A value behind a lock.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<Result>(_ body: (inout Value) -> Result) -> Result { lock.withLock { body(&value) } }
}

/// An ISO 8601 time `seconds` from now, as the credential sources write it.
func iso8601(secondsFromNow seconds: Double) -> String {
    ISO8601DateFormatter().string(from: Date().addingTimeInterval(seconds))
}

/// The container / IMDS credentials JSON.
func credentialsJSON(_ id: String, expiresIn seconds: Double, tokenField: String = "Token") -> String {
    """
    {"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"\(id)","SecretAccessKey":"secret-\(id)",\
    "\(tokenField)":"token-\(id)","Expiration":"\(iso8601(secondsFromNow: seconds))"}
    """
}

/// A temporary file with `text`, removed by the caller.
func temporaryFile(_ text: String, mode: Int = 0o600) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("qk-aws-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode])
    return path
}
