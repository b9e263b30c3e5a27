import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import QuotaKeeperTestSupport
import Testing

/// `--endpoint` at a Bedrock stand-in that is not bedrock-sim (a small Python server speaking Converse, no
/// `/stats`): requests are signed with the AWS credential chain, and the report is built from what the app
/// instances saw and says so.
@Suite("quotakeeper-fleet --endpoint")
struct FleetEndpointTests {
    /// Answers Converse (every 4th request a ThrottlingException 429), 404 elsewhere; counts requests by the
    /// access key id of their Authorization header and serves the counts at GET /_counts.
    static let standIn = #"""
    import json, re, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    counts, lock = {}, threading.Lock()
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args): pass
        def answer(self, status, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers: self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            if self.path == "/_counts":
                with lock: return self.answer(200, counts)
            self.answer(404, {"message": "not found"})
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not re.fullmatch(r"/model/[^/]+/converse", self.path): return self.answer(404, {"message": "unknown operation"})
            key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
            key = key.group(1) if key else "unsigned"
            with lock:
                counts[key] = counts.get(key, 0) + 1
                n = sum(counts.values())
            if n % 4 == 0:
                return self.answer(429, {"message": "Too many requests, please wait before trying again."},
                                   [("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")])
            self.answer(200, {"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}}, "stopReason": "end_turn",
                              "usage": {"inputTokens": 40, "outputTokens": 10, "totalTokens": 50}, "metrics": {"latencyMs": 5}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """#

    @Test("signed with the chain's key, not the demo key; the report's source is the app instances; Redis round trips from their metrics")
    func standInEndpoint() async throws {
        let script = FileManager.default.temporaryDirectory.appending(path: "bedrock-stand-in-\(UUID().uuidString).py")
        try Data(Self.standIn.utf8).write(to: script)
        defer { try? FileManager.default.removeItem(at: script) }
        let server = try await BackgroundChildProcess(
            URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", script.path], standardOutput: .collected, standardError: .discarded)
        defer { server.signal(SIGKILL) }
        var portText = ""
        for _ in 0..<200 where !portText.hasSuffix("\n") && server.exitStatus == nil {
            try await Task.sleep(for: .milliseconds(25))
            portText = server.standardOutput
        }
        let port = try #require(Int(portText.trimmingCharacters(in: .whitespacesAndNewlines)))
        let endpoint = "http://127.0.0.1:\(port)"

        let fleet = try BuiltProduct.url("quotakeeper-fleet")
        let json = FileManager.default.temporaryDirectory.appending(path: "fleet-endpoint-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = "AKIAFLEETCHAIN"
        environment["AWS_SECRET_ACCESS_KEY"] = "chain-secret"
        environment["AWS_EC2_METADATA_DISABLED"] = "true"
        let result = try await ChildProcess.run(
            fleet,
            arguments: ["run", "--endpoint", endpoint, "--modes", "coordinated", "--scenario", "spike", "--window-seconds", "4",
                        "--duration-seconds", "4", "--redis-url", TestRedis.url, "--json", json.path, "--log-level", "warning"],
            environment: environment)
        try #require(result.status == 0, "\(result.output)\(result.errorOutput)")
        #expect(result.output.contains("the endpoint has no bedrock-sim /stats; numbers above are what the app instances saw"))

        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any]
        let mode = try #require((report?["modes"] as? [[String: Any]])?.first)
        #expect(mode["source"] as? String == "app instances")
        let fleetRow = try #require(mode["fleet"] as? [String: Any])
        let attempted = fleetRow["attempted"] as? Int ?? 0
        #expect(attempted > 0)
        #expect((fleetRow["succeeded"] as? Int ?? 0) > 0)
        #expect((fleetRow["lost"] as? Int) == 0)
        #expect((fleetRow["quotaThrottles"] as? Int ?? 0) > 0, "the stand-in's 429s are counted from the instances")
        #expect((mode["redisRoundTrips"] as? Int ?? 0) >= attempted, "at least one reservation per request")
        #expect(mode["observedUtilization"] is Double)
        #expect((mode["referee"] as? [String: Any])?.isEmpty == true)

        let (data, _) = try await URLSession.shared.data(from: URL(string: "\(endpoint)/_counts")!)
        let counts = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Int])
        #expect(counts.keys.sorted() == ["AKIAFLEETCHAIN"], "every request signed with the chain's key: \(counts)")
    }
}
