import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import QuotaKeeperTestSupport
import Testing

/// Runs the built `bedrock-sim` binary as a separate process, the way the fleet demo launches it.
@Suite("bedrock-sim executable")
struct SimulatorExecutableTests {

    @Test("starts on a free port, writes --port-file, enforces flags' quotas, serves /stats, stops on SIGTERM")
    func launch() async throws {
        let binary = try BuiltProduct.url("bedrock-sim")
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("bedrock-sim-\(UUID().uuidString).port")
        defer { try? FileManager.default.removeItem(at: portFile) }
        let process = try await BackgroundChildProcess(
            binary,
            arguments: ["--port", "0", "--port-file", portFile.path, "--seed", "3",
                        "--model", "m@rpm=1,ttft-ms=0,tps=1000000", "--log-level", "error"],
            standardOutput: .collected)

        var port: Int?
        for _ in 0..<100 where port == nil {
            try await Task.sleep(for: .milliseconds(50))
            port = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        let bound = try #require(port)
        var configuration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:\(bound)")!)
        configuration.credentials = StaticCredentialsProvider(testCredentials)
        let client = BedrockRuntimeClient(configuration: configuration)
        #expect(await converseError(client, model: "m", prompt(maxTokens: 10, forcedOutput: 1)) == nil)
        #expect(await converseError(client, model: "m", prompt(maxTokens: 10))?.kind == .throttledRequests)

        let (status, _, data) = try await rawRequest(URL(string: "http://127.0.0.1:\(bound)/stats")!, method: "GET")
        #expect(status == 200)
        let stats = try JSONDecoder().decode(SimulatorStatsSnapshot.self, from: data)
        #expect(stats.seed == 3)
        #expect(stats.models["m"]?.totals.throttledRequests == 1)

        process.signal(SIGTERM)
        _ = try await process.waitForExit()
        let printed = process.standardOutput
        #expect(printed.contains("bedrock-sim listening on http://127.0.0.1:\(bound)"))
    }

    @Test("a bad flag exits non-zero and names the problem")
    func badFlag() async throws {
        let result = try await ChildProcess.run(try BuiltProduct.url("bedrock-sim"), arguments: ["--model", "m@rpx=1", "--print-config"])
        #expect(result.status != 0)
        #expect(result.errorOutput.contains("rpx"))
    }
}
