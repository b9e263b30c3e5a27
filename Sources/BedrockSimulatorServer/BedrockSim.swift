import ArgumentParser
import BedrockSimulator
import Foundation
import Logging

/// `bedrock-sim`: a local stand-in for bedrock-runtime that enforces quotas like the real service.
@main
struct BedrockSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bedrock-sim",
        abstract: "A local Bedrock Runtime simulator: Converse and CountTokens with Bedrock's quota rule, faults and GET /stats.",
        discussion: """
        Model specs: MODEL_ID@rpm=50,tpm=200000,tpd=..,burndown=5,max-output=8192,default-max-tokens=..,
        ttft-ms=400,tps=80,median-output=200,spread=0.8,unavailable-rate=0.05
        Overload specs: MODEL_ID@START+DURATION (simulated seconds since start).
        Flags override the --config file. On start, prints 'bedrock-sim listening on http://HOST:PORT'.
        """
    )

    @Option(help: "JSON configuration file (see docs/simulator.md); flags override it.")
    var config: String?
    @Option(help: "Interface to bind.")
    var host: String?
    @Option(help: "Port to bind; 0 picks a free one (see --port-file).")
    var port: Int?
    @Option(help: "Write the bound port to this file once listening.")
    var portFile: String?
    @Option(help: "Seed for faults and output lengths.")
    var seed: UInt64?
    @Option(help: "Wall seconds per simulated second (0.01 = 100x faster).")
    var timeScale: Double?
    @Option(help: "Rolling RPM/TPM window in simulated seconds.")
    var windowSeconds: Double?
    @Option(help: "Rolling tokens-per-day window in simulated seconds.")
    var dayWindowSeconds: Double?
    @Option(help: "Characters per input token.")
    var charactersPerToken: Double?
    @Option(name: .customLong("model"), help: "A model profile, MODEL_ID@key=value,... (repeatable).")
    var models: [String] = []
    @Option(help: "Profile (key=value,...) for model ids not configured.")
    var defaultModel: String?
    @Flag(help: "Answer 404 ResourceNotFound for model ids not configured.")
    var rejectUnknownModels = false
    @Option(name: .customLong("overload"), help: "An overload period, MODEL_ID@START+DURATION (repeatable).")
    var overloads: [String] = []
    @Option(help: "Probability of 503 'Service temporarily unavailable' per request.")
    var unavailableRate: Double?
    @Option(help: ArgumentHelp(
        "An exception event sent in the middle of streamed answers with this probability per stream, TYPE=RATE (repeatable; TYPE: throttlingException, serviceUnavailableException, modelStreamErrorException, internalServerException, validationException, modelTimeoutException).",
        valueName: "type=rate"))
    var streamErrorRate: [String] = []
    @Option(help: "Concurrent requests above which 503 'Too many connections' is answered.")
    var maxConnections: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
    @Flag(help: "Print the effective configuration as JSON and exit.")
    var printConfig = false

    func effectiveConfiguration() throws -> SimulatorConfiguration {
        var configuration = try config.map { try SimulatorConfiguration.load(from: URL(fileURLWithPath: $0)) }
            ?? SimulatorConfiguration()
        if let host { configuration.host = host }
        if let port { configuration.port = port }
        if let seed { configuration.seed = seed }
        if let timeScale { configuration.timeScale = timeScale }
        if let windowSeconds { configuration.quotaWindowSeconds = windowSeconds }
        if let dayWindowSeconds { configuration.dayWindowSeconds = dayWindowSeconds }
        if let charactersPerToken { configuration.charactersPerToken = charactersPerToken }
        if let unavailableRate { configuration.serviceUnavailableRate = unavailableRate }
        if let maxConnections { configuration.maxConcurrentConnections = maxConnections }
        for spec in streamErrorRate {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let rate = Double(parts[1]) else {
                throw SimulatorConfigurationError(message: "--stream-error-rate takes TYPE=RATE, e.g. throttlingException=0.1")
            }
            configuration.streamErrors.removeAll { $0.exceptionType == parts[0] }
            configuration.streamErrors.append(StreamErrorInjection(exceptionType: parts[0], rate: rate))
        }
        if let defaultModel {
            configuration.defaultModel = try ModelSpec.parseSettings(
                defaultModel, base: configuration.defaultModel ?? ModelProfile())
        }
        if rejectUnknownModels { configuration.defaultModel = nil }
        for spec in models {
            let id = try ModelSpec.parseModel(spec).id
            let parsed = try ModelSpec.parseModel(spec, base: configuration.models[id] ?? ModelProfile())
            configuration.models[parsed.id] = parsed.profile
        }
        for spec in overloads {
            let parsed = try ModelSpec.parseOverload(spec)
            var profile = configuration.models[parsed.id] ?? configuration.defaultModel ?? ModelProfile()
            profile.overloadPeriods.append(parsed.period)
            configuration.models[parsed.id] = profile
        }
        try configuration.validate()
        return configuration
    }

    func run() async throws {
        let configuration: SimulatorConfiguration
        do {
            configuration = try effectiveConfiguration()
        } catch let error as SimulatorConfigurationError {
            throw ValidationError(error.message)
        }
        if printConfig {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(configuration), as: UTF8.self))
            return
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown --log-level \(logLevel)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let simulator = try SimulatorServer(configuration: configuration, logger: Logger(label: "bedrock-sim"))
        let endpoint = try await simulator.start()
        if let portFile, let port = await simulator.port {
            try Data("\(port)\n".utf8).write(to: URL(fileURLWithPath: portFile), options: .atomic)
        }
        FileHandle.standardOutput.write(Data("bedrock-sim listening on \(endpoint.absoluteString)\n".utf8))
        try await simulator.run()
    }
}
