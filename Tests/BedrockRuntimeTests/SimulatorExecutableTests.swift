import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Testing

/// Runs the built `bedrock-sim` binary as a separate process, the way the fleet demo launches it.
@Suite("bedrock-sim executable")
struct SimulatorExecutableTests {
    /// `bedrock-sim` sits next to the test bundle in the build folder.
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("bedrock-sim")
    }

    @Test("starts on a free port, writes --port-file, enforces flags' quotas, serves /stats, stops on SIGTERM")
    func launch() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path),
                     "bedrock-sim is not built next to the tests: run `swift build` before `swift test`")
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("bedrock-sim-\(UUID().uuidString).port")
        defer { try? FileManager.default.removeItem(at: portFile) }
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["--port", "0", "--port-file", portFile.path, "--seed", "3",
                             "--model", "m@rpm=1,ttft-ms=0,tps=1000000", "--log-level", "error"]
        let stdout = Pipe()
        process.standardOutput = stdout
        try process.run()
        defer { if process.isRunning { process.terminate() } }

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

        process.terminate()
        process.waitUntilExit()
        let printed = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printed.contains("bedrock-sim listening on http://127.0.0.1:\(bound)"))
    }

    @Test("a bad flag exits non-zero and names the problem")
    func badFlag() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path),
                     "bedrock-sim is not built next to the tests: run `swift build` before `swift test`")
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["--model", "m@rpx=1", "--print-config"]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = Pipe()
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains("rpx"))
    }
}
