import BedrockSimulator
import ChildProcesses
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A `bedrock-sim` the orchestrator launched as a separate process on a free loopback port.
final class SimulatorProcess: Sendable {
    let endpoint: URL
    private let process: BackgroundChildProcess

    /// Launches `bedrock-sim` with the scenario's models, quotas and faults, and waits until it listens.
    /// - Parameters:
    ///   - executable: the `bedrock-sim` binary.
    ///   - settings: the run's settings (quotas, time scale, faults).
    ///   - overloadStartOffset: wall seconds between the simulator's start and the mode's start, so the
    ///     overload period (given in wall seconds since the mode's start) lands where it was asked for.
    /// - Throws: `FleetError` when the binary is missing or does not come up within 20 s.
    init(executable: URL, settings: FleetSettings, overloadStartOffset: Double, directory: URL) async throws {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw FleetError(.simulatorUnavailable, "bedrock-sim not found at \(executable.path): build it (swift build --product bedrock-sim)")
        }
        let portFile = directory.appending(path: "sim-\(UUID().uuidString.prefix(8)).port")
        var arguments = [
            "--port", "0", "--port-file", portFile.path, "--seed", String(settings.seed),
            "--time-scale", String(settings.timeScale), "--max-connections", "1000", "--log-level", "error",
            "--reject-unknown-models",
        ]
        for model in [settings.primaryModel] + (settings.fallbackModel.map { [$0] } ?? []) {
            var keys = ["ttft-ms=\(settings.firstTokenMilliseconds)", "tps=\(settings.outputTokensPerSecond)", "burndown=1"]
            if let rpm = settings.quotaRPM { keys.append("rpm=\(rpm)") }
            if let tpm = settings.quotaTPM { keys.append("tpm=\(tpm)") }
            if model == settings.primaryModel, settings.fault503Rate > 0 { keys.append("unavailable-rate=\(settings.fault503Rate)") }
            arguments += ["--model", "\(model)@\(keys.joined(separator: ","))"]
        }
        if let overload = settings.overload {
            let start = (overload.start + overloadStartOffset) / settings.timeScale
            let duration = (overload.end - overload.start) / settings.timeScale
            arguments += ["--overload", "\(settings.primaryModel)@\(Int(start.rounded()))+\(Int(duration.rounded()))"]
        }
        let process = try await BackgroundChildProcess(executable, arguments: arguments, standardOutput: .discarded, standardError: .inherited)
        self.process = process

        let clock = ContinuousClock()
        let giveUp = clock.now + .seconds(20)
        while clock.now < giveUp {
            if let text = try? String(contentsOf: portFile, encoding: .utf8),
               let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), port > 0 {
                endpoint = URL(string: "http://127.0.0.1:\(port)")!
                return
            }
            if let status = process.exitStatus { throw FleetError(.simulatorUnavailable, "bedrock-sim exited with status \(status) at start") }
            try await Task.sleep(for: .milliseconds(20))
        }
        process.signal(SIGTERM)
        throw FleetError(.simulatorUnavailable, "bedrock-sim did not start listening within 20 s")
    }

    /// Stops the simulator (SIGTERM) and waits for it.
    func stop() async {
        process.signal(SIGTERM)
        _ = try? await process.waitForExit()
    }
}

/// Reads `GET /stats` (the referee's numbers) from a simulator.
enum Referee {
    static func stats(from endpoint: URL, since second: Int? = nil) async throws -> SimulatorStatsSnapshot {
        var url = endpoint.appending(path: "stats")
        if let second { url.append(queryItems: [URLQueryItem(name: "since", value: String(second))]) }
        let (data, response) = try await URLSession.shared.data(from: url)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw FleetError(.simulatorUnavailable, "GET \(url) answered \((response as? HTTPURLResponse)?.statusCode ?? 0)")
        }
        return try JSONDecoder().decode(SimulatorStatsSnapshot.self, from: data)
    }
}

/// A failure of the demo itself (not of a Bedrock call): a missing binary, a simulator or app instance that
/// failed, a configuration that cannot run. Each code has its own exit status (docs/fleet-demo.md).
struct FleetError: Error, Sendable, CustomStringConvertible {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// The process's exit status for this failure.
        let exitStatus: Int32
        private init(_ name: String, exitStatus: Int32) {
            self.name = name
            self.exitStatus = exitStatus
        }
        /// The run cannot be set up as asked (e.g. coordinated mode without Redis).
        static let invalidConfiguration = Code("invalidConfiguration", exitStatus: 2)
        /// `bedrock-sim` is missing, did not start, or did not answer `/stats`.
        static let simulatorUnavailable = Code("simulatorUnavailable", exitStatus: 3)
        /// An app instance exited with an error or did not finish in time.
        static let instanceFailed = Code("instanceFailed", exitStatus: 4)
        /// `--redis-fault` with a Redis the fleet did not start (`--redis-url`): faults are applied only to the
        /// redis-server the fleet starts itself.
        static let redisFaultRefused = Code("redisFaultRefused", exitStatus: 5)
        /// The redis-server the fleet started could not start, or did not come back after a fault.
        static let redisUnavailable = Code("redisUnavailable", exitStatus: 6)
        var description: String { name }
    }

    var code: Code
    var message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { "FleetError.\(code): \(message)" }
}
