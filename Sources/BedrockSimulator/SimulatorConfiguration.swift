import Foundation

/// Everything `bedrock-sim` can be told: where to listen, the clock, the models and their quotas, faults.
///
/// All durations in model profiles and windows are in *simulated* seconds; `timeScale` converts them to
/// wall-clock time (0.01 makes a 60 s quota window last 0.6 s and a 400 ms first-token delay last 4 ms).
/// Every field is optional in a JSON config file; a missing field keeps its default.
public struct SimulatorConfiguration: Sendable, Codable, Equatable {
    /// Interface to bind; `127.0.0.1` by default (loopback only).
    public var host: String = "127.0.0.1"
    /// Port to bind; 0 picks a free port (read it back from ``SimulatorServer/port``).
    public var port: Int = 0
    /// Seed for fault injection and output lengths: the same seed and the same request sequence give the
    /// same answers.
    public var seed: UInt64 = 1
    /// Wall-clock seconds per simulated second (1 = real time, 0.01 = 100x faster).
    public var timeScale: Double = 1
    /// Length of the rolling window for requests- and tokens-per-minute quotas, in simulated seconds.
    public var quotaWindowSeconds: Double = 60
    /// Length of the rolling window for the tokens-per-day quota, in simulated seconds.
    public var dayWindowSeconds: Double = 86_400
    /// Characters per token when counting input (Converse and CountTokens agree on this count).
    public var charactersPerToken: Double = 4
    /// Concurrent in-flight requests above which requests get 503 "Too many connections"; nil = no cap.
    public var maxConcurrentConnections: Int?
    /// Probability (0...1) that a request gets 503 "Service temporarily unavailable" before admission.
    public var serviceUnavailableRate: Double = 0
    /// Exception events injected in the middle of streamed answers (ConverseStream,
    /// InvokeModelWithResponseStream): each is rolled per stream with its own probability.
    public var streamErrors: [StreamErrorInjection] = []
    /// How long a prompt-cache prefix stays cached after its last use, in simulated seconds.
    public var cacheTTLSeconds: Double = 300
    /// How many per-second stats buckets each model keeps (older ones are dropped; totals are kept).
    public var statsRetentionSeconds: Int = 3_600
    /// Burndown rates by model-id fragment; the first match wins, otherwise 1.
    public var burndownRules: [BurndownRule] = BurndownRule.defaults
    /// Model profiles by model id (or inference profile id).
    public var models: [String: ModelProfile] = [:]
    /// Profile used for model ids not listed in ``models``; nil makes unknown ids 404 ResourceNotFound.
    public var defaultModel: ModelProfile? = ModelProfile()

    /// Creates a configuration with every field at its default.
    public init() {}

    /// Reads a JSON configuration file.
    /// - Parameter url: The file to read.
    /// - Throws: ``SimulatorConfigurationError`` naming the file and what was wrong.
    public static func load(from url: URL) throws -> SimulatorConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw SimulatorConfigurationError(message: "cannot read config file \(url.path): \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(SimulatorConfiguration.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            throw SimulatorConfigurationError(message: "config file \(url.path) is not valid JSON: \(context.debugDescription)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw SimulatorConfigurationError(message: "config file \(url.path): bad value at \(path): \(context.debugDescription)")
        } catch {
            throw SimulatorConfigurationError(message: "config file \(url.path): \(error)")
        }
    }

    /// Checks ranges (positive windows and scale, rates within 0...1, sane model profiles).
    /// - Throws: ``SimulatorConfigurationError`` naming the first bad field.
    public func validate() throws {
        func fail(_ message: String) -> SimulatorConfigurationError { SimulatorConfigurationError(message: message) }
        guard (0...65_535).contains(port) else { throw fail("port \(port) is outside 0...65535") }
        guard timeScale > 0 else { throw fail("timeScale must be > 0, got \(timeScale)") }
        guard quotaWindowSeconds > 0, dayWindowSeconds > 0 else { throw fail("quota windows must be > 0") }
        guard charactersPerToken > 0 else { throw fail("charactersPerToken must be > 0") }
        guard (0...1).contains(serviceUnavailableRate) else {
            throw fail("serviceUnavailableRate must be within 0...1, got \(serviceUnavailableRate)")
        }
        for injection in streamErrors {
            guard StreamErrorInjection.knownTypes.contains(injection.exceptionType) else {
                throw fail("stream error type \(injection.exceptionType) is not one of \(StreamErrorInjection.knownTypes.sorted().joined(separator: ", "))")
            }
            guard (0...1).contains(injection.rate) else {
                throw fail("the \(injection.exceptionType) stream error rate must be within 0...1, got \(injection.rate)")
            }
        }
        if let cap = maxConcurrentConnections, cap < 1 { throw fail("maxConcurrentConnections must be >= 1") }
        guard statsRetentionSeconds >= 1 else { throw fail("statsRetentionSeconds must be >= 1") }
        for (id, profile) in models { try profile.validate(name: "models[\(id)]") }
        try defaultModel?.validate(name: "defaultModel")
    }

    /// The burndown rate for a model: its profile's override, else the first matching rule, else 1.
    /// - Parameters:
    ///   - modelId: The model or inference profile id.
    ///   - profile: The model's profile.
    public func burndownRate(for modelId: String, profile: ModelProfile) -> Double {
        if let rate = profile.burndownRate { return rate }
        let lowered = modelId.lowercased()
        return burndownRules.first { lowered.contains($0.modelIdContains.lowercased()) }?.rate ?? 1
    }

    private enum CodingKeys: String, CodingKey {
        case host, port, seed, timeScale, quotaWindowSeconds, dayWindowSeconds, charactersPerToken
        case maxConcurrentConnections, serviceUnavailableRate, streamErrors, cacheTTLSeconds, statsRetentionSeconds
        case burndownRules, models, defaultModel
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SimulatorConfiguration()
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? d.host
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? d.port
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        timeScale = try c.decodeIfPresent(Double.self, forKey: .timeScale) ?? d.timeScale
        quotaWindowSeconds = try c.decodeIfPresent(Double.self, forKey: .quotaWindowSeconds) ?? d.quotaWindowSeconds
        dayWindowSeconds = try c.decodeIfPresent(Double.self, forKey: .dayWindowSeconds) ?? d.dayWindowSeconds
        charactersPerToken = try c.decodeIfPresent(Double.self, forKey: .charactersPerToken) ?? d.charactersPerToken
        maxConcurrentConnections = try c.decodeIfPresent(Int.self, forKey: .maxConcurrentConnections)
        serviceUnavailableRate = try c.decodeIfPresent(Double.self, forKey: .serviceUnavailableRate)
            ?? d.serviceUnavailableRate
        streamErrors = try c.decodeIfPresent([StreamErrorInjection].self, forKey: .streamErrors) ?? d.streamErrors
        cacheTTLSeconds = try c.decodeIfPresent(Double.self, forKey: .cacheTTLSeconds) ?? d.cacheTTLSeconds
        statsRetentionSeconds = try c.decodeIfPresent(Int.self, forKey: .statsRetentionSeconds)
            ?? d.statsRetentionSeconds
        burndownRules = try c.decodeIfPresent([BurndownRule].self, forKey: .burndownRules) ?? d.burndownRules
        models = try c.decodeIfPresent([String: ModelProfile].self, forKey: .models) ?? d.models
        if c.contains(.defaultModel) {
            defaultModel = try c.decodeIfPresent(ModelProfile.self, forKey: .defaultModel)
        } else {
            defaultModel = d.defaultModel
        }
    }
}

/// A configuration problem, with a message naming the field or file.
public struct SimulatorConfigurationError: Error, Sendable, CustomStringConvertible {
    /// What was wrong.
    public var message: String
    /// Creates an error.
    /// - Parameter message: What was wrong.
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A burndown rate for every model id containing a fragment.
public struct BurndownRule: Sendable, Codable, Equatable {
    /// Case-insensitive fragment of the model id.
    public var modelIdContains: String
    /// Output-token multiplier charged at the end of a request.
    public var rate: Double

    /// Creates a rule.
    /// - Parameters:
    ///   - modelIdContains: Case-insensitive fragment of the model id.
    ///   - rate: Output-token multiplier.
    public init(modelIdContains: String, rate: Double) {
        self.modelIdContains = modelIdContains
        self.rate = rate
    }

    /// 5x for the Claude models the facts sheet lists (3.7 Sonnet, Sonnet 4 / 4.5 / 4.6, Opus 4 / 4.1 /
    /// 4.5 / 4.6); everything else 1x.
    public static let defaults: [BurndownRule] = [
        BurndownRule(modelIdContains: "claude-3-7-sonnet", rate: 5),
        BurndownRule(modelIdContains: "claude-sonnet-4", rate: 5),
        BurndownRule(modelIdContains: "claude-opus-4", rate: 5),
    ]
}

/// A span of simulated time, in seconds since the simulator started.
public struct SimulatedPeriod: Sendable, Codable, Equatable {
    /// Start, in simulated seconds since start.
    public var startSeconds: Double
    /// Length, in simulated seconds.
    public var durationSeconds: Double

    /// Creates a period.
    /// - Parameters:
    ///   - startSeconds: Start, in simulated seconds since the simulator started.
    ///   - durationSeconds: Length in simulated seconds.
    public init(startSeconds: Double, durationSeconds: Double) {
        self.startSeconds = startSeconds
        self.durationSeconds = durationSeconds
    }

    /// Whether a simulated instant lies inside the period.
    func contains(_ second: Double) -> Bool {
        second >= startSeconds && second < startSeconds + durationSeconds
    }
}

/// An error answered instead of a result, at a given rate, before admission (so it is not charged).
public struct InjectedError: Sendable, Codable, Equatable {
    /// HTTP status, e.g. 500.
    public var status: Int
    /// `x-amzn-ErrorType` name, e.g. `InternalServerException`.
    public var errorType: String
    /// The body's message.
    public var message: String
    /// Probability per request, 0...1.
    public var rate: Double

    /// Creates an injected error.
    /// - Parameters:
    ///   - status: HTTP status.
    ///   - errorType: Error type name.
    ///   - message: Body message.
    ///   - rate: Probability per request (0...1).
    public init(status: Int, errorType: String, message: String, rate: Double) {
        self.status = status
        self.errorType = errorType
        self.message = message
        self.rate = rate
    }
}

/// One model's quotas, speed and faults.
public struct ModelProfile: Sendable, Codable, Equatable {
    /// Requests per quota window (RPM); nil = not enforced (token-only models).
    public var requestsPerMinute: Int?
    /// Tokens per quota window (TPM, input and output combined); nil = not enforced.
    public var tokensPerMinute: Int?
    /// Tokens per day window; nil = `tokensPerMinute x 1440` when TPM is set, else not enforced.
    public var tokensPerDay: Int?
    /// Output-token multiplier charged at the end; nil = from ``SimulatorConfiguration/burndownRules``.
    public var burndownRate: Double?
    /// The model's maximum output; `maxTokens` above it is a ValidationException.
    public var maxOutputTokens: Int = 8_192
    /// `maxTokens` assumed (and held) when a request sets none; nil = ``maxOutputTokens``.
    public var defaultMaxTokens: Int?
    /// Time to first token, in simulated milliseconds.
    public var timeToFirstTokenMs: Double = 400
    /// Generation speed, in output tokens per simulated second.
    public var outputTokensPerSecond: Double = 80
    /// Median of the log-normal output-length distribution (clamped to 1...maxTokens).
    public var medianOutputTokens: Double = 200
    /// Sigma of the log-normal output-length distribution (0 = always the median).
    public var outputTokensSpread: Double = 0.8
    /// This model's 503 rate; nil = the global ``SimulatorConfiguration/serviceUnavailableRate``.
    public var serviceUnavailableRate: Double?
    /// Periods in which every request gets 429 "Model ... is currently overloaded".
    public var overloadPeriods: [SimulatedPeriod] = []
    /// Further errors answered at given rates (500, 408, 424, ModelNotReady, ...).
    public var injectedErrors: [InjectedError] = []

    /// Creates a profile.
    public init(
        requestsPerMinute: Int? = nil,
        tokensPerMinute: Int? = nil,
        tokensPerDay: Int? = nil,
        burndownRate: Double? = nil,
        maxOutputTokens: Int = 8_192,
        defaultMaxTokens: Int? = nil,
        timeToFirstTokenMs: Double = 400,
        outputTokensPerSecond: Double = 80,
        medianOutputTokens: Double = 200,
        outputTokensSpread: Double = 0.8,
        serviceUnavailableRate: Double? = nil,
        overloadPeriods: [SimulatedPeriod] = [],
        injectedErrors: [InjectedError] = []
    ) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.tokensPerDay = tokensPerDay
        self.burndownRate = burndownRate
        self.maxOutputTokens = maxOutputTokens
        self.defaultMaxTokens = defaultMaxTokens
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.outputTokensPerSecond = outputTokensPerSecond
        self.medianOutputTokens = medianOutputTokens
        self.outputTokensSpread = outputTokensSpread
        self.serviceUnavailableRate = serviceUnavailableRate
        self.overloadPeriods = overloadPeriods
        self.injectedErrors = injectedErrors
    }

    /// The tokens-per-day limit in force: explicit, or TPM x 1440.
    public var effectiveTokensPerDay: Int? {
        tokensPerDay ?? tokensPerMinute.map { $0 * 1_440 }
    }

    func validate(name: String) throws {
        func fail(_ message: String) -> SimulatorConfigurationError {
            SimulatorConfigurationError(message: "\(name): \(message)")
        }
        if let rpm = requestsPerMinute, rpm < 0 { throw fail("requestsPerMinute must be >= 0") }
        if let tpm = tokensPerMinute, tpm < 0 { throw fail("tokensPerMinute must be >= 0") }
        if let tpd = tokensPerDay, tpd < 0 { throw fail("tokensPerDay must be >= 0") }
        if let rate = burndownRate, rate < 0 { throw fail("burndownRate must be >= 0") }
        guard maxOutputTokens >= 1 else { throw fail("maxOutputTokens must be >= 1") }
        if let value = defaultMaxTokens, !(1...maxOutputTokens).contains(value) {
            throw fail("defaultMaxTokens must be within 1...maxOutputTokens")
        }
        guard timeToFirstTokenMs >= 0, outputTokensPerSecond > 0 else {
            throw fail("timeToFirstTokenMs must be >= 0 and outputTokensPerSecond > 0")
        }
        guard medianOutputTokens >= 1, outputTokensSpread >= 0 else {
            throw fail("medianOutputTokens must be >= 1 and outputTokensSpread >= 0")
        }
        if let rate = serviceUnavailableRate, !(0...1).contains(rate) {
            throw fail("serviceUnavailableRate must be within 0...1")
        }
        for injected in injectedErrors where !(0...1).contains(injected.rate) || !(400...599).contains(injected.status) {
            throw fail("injected error \(injected.errorType) needs a rate within 0...1 and a 4xx/5xx status")
        }
    }

    private enum CodingKeys: String, CodingKey {
        case requestsPerMinute, tokensPerMinute, tokensPerDay, burndownRate, maxOutputTokens, defaultMaxTokens
        case timeToFirstTokenMs, outputTokensPerSecond, medianOutputTokens, outputTokensSpread
        case serviceUnavailableRate, overloadPeriods, injectedErrors
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelProfile()
        requestsPerMinute = try c.decodeIfPresent(Int.self, forKey: .requestsPerMinute)
        tokensPerMinute = try c.decodeIfPresent(Int.self, forKey: .tokensPerMinute)
        tokensPerDay = try c.decodeIfPresent(Int.self, forKey: .tokensPerDay)
        burndownRate = try c.decodeIfPresent(Double.self, forKey: .burndownRate)
        maxOutputTokens = try c.decodeIfPresent(Int.self, forKey: .maxOutputTokens) ?? d.maxOutputTokens
        defaultMaxTokens = try c.decodeIfPresent(Int.self, forKey: .defaultMaxTokens)
        timeToFirstTokenMs = try c.decodeIfPresent(Double.self, forKey: .timeToFirstTokenMs) ?? d.timeToFirstTokenMs
        outputTokensPerSecond = try c.decodeIfPresent(Double.self, forKey: .outputTokensPerSecond)
            ?? d.outputTokensPerSecond
        medianOutputTokens = try c.decodeIfPresent(Double.self, forKey: .medianOutputTokens) ?? d.medianOutputTokens
        outputTokensSpread = try c.decodeIfPresent(Double.self, forKey: .outputTokensSpread) ?? d.outputTokensSpread
        serviceUnavailableRate = try c.decodeIfPresent(Double.self, forKey: .serviceUnavailableRate)
        overloadPeriods = try c.decodeIfPresent([SimulatedPeriod].self, forKey: .overloadPeriods) ?? []
        injectedErrors = try c.decodeIfPresent([InjectedError].self, forKey: .injectedErrors) ?? []
    }
}

/// An exception event the simulator sends in the middle of a streamed answer, after half of the output,
/// instead of the rest of it. The stream then ends; the hold is settled as input + cache writes + the output
/// already sent x burndown.
public struct StreamErrorInjection: Sendable, Codable, Equatable {
    /// The event's `:exception-type`, e.g. `throttlingException`.
    public var exceptionType: String
    /// Probability per streamed answer.
    public var rate: Double

    /// Creates an injection.
    public init(exceptionType: String, rate: Double) {
        self.exceptionType = exceptionType
        self.rate = rate
    }

    /// The exception events Bedrock Runtime's streams define.
    public static let knownTypes: Set<String> = [
        "throttlingException", "serviceUnavailableException", "modelStreamErrorException",
        "internalServerException", "validationException", "modelTimeoutException",
    ]

    /// The message Bedrock sends with each type.
    var message: String {
        switch exceptionType {
        case "throttlingException": "Too many tokens, please wait before trying again."
        case "serviceUnavailableException": "Service temporarily unavailable, please try again."
        case "modelStreamErrorException": "The model stream ended with an error."
        case "internalServerException": "The server encountered an internal error."
        case "modelTimeoutException": "The model took too long to respond."
        default: "The request was invalid."
        }
    }
}
