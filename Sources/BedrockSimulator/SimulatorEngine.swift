import Foundation

/// An admitted Converse request: what it will report, how long it takes, and what to settle.
struct ConversePlan: Sendable {
    var modelId: String
    var ticket: Int
    var inputTokens: Int
    var cacheReadInputTokens: Int
    var cacheWriteInputTokens: Int
    var outputTokens: Int
    var stopReason: String
    /// Latency the response reports (simulated milliseconds).
    var latencyMs: Int
    /// Wall-clock time to wait before answering.
    var wallDelay: Duration
    var burndownRate: Double
    var outputSeed: UInt64
    /// The exception event a streamed answer ends with after half of its output (nil: none).
    var streamError: StreamErrorInjection?
    /// Simulated time to the first token, in milliseconds.
    var timeToFirstTokenMs: Double
    /// Simulated output speed.
    var outputTokensPerSecond: Double

    /// `input + cacheWrite + output x burndown`, rounded up.
    var charge: Int { charge(outputTokens: outputTokens) }

    /// The charge had only `outputTokens` been generated.
    func charge(outputTokens: Int) -> Int {
        inputTokens + cacheWriteInputTokens + Int((Double(outputTokens) * burndownRate).rounded(.up))
    }
}

/// How a request names the model's input.
enum RequestFormat: Sendable {
    /// Converse / ConverseStream: `messages`, `system`, `inferenceConfig`.
    case converse
    /// InvokeModel / InvokeModelWithResponseStream: the model's native body (Anthropic Messages API, or a
    /// `prompt` / `inputText` string).
    case invokeModel
}

/// The simulator's state: quotas, faults, prompt cache and stats. All decisions happen here, serially.
actor SimulatorEngine {
    private struct ModelState {
        var profile: ModelProfile
        var burndownRate: Double
        var referee: QuotaReferee
        var stats: ModelStatsRecorder
        var admittedCount: UInt64 = 0
    }

    let configuration: SimulatorConfiguration
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var faults: SeededRandom
    private var models: [String: ModelState] = [:]
    private var cacheExpiry: [String: Double] = [:]
    private var inFlight = 0
    private var peakInFlight = 0
    private var unroutedRequests = 0
    private var unauthenticatedRequests = 0
    private let counter: TokenCounter

    init(configuration: SimulatorConfiguration) {
        self.configuration = configuration
        start = clock.now
        faults = SeededRandom(seed: configuration.seed)
        counter = TokenCounter(charactersPerToken: configuration.charactersPerToken)
    }

    /// Simulated seconds since start.
    private var now: Double {
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return seconds / configuration.timeScale
    }

    private func state(for modelId: String) -> ModelState? {
        if let existing = models[modelId] { return existing }
        guard let profile = configuration.models[modelId] ?? configuration.defaultModel else { return nil }
        let state = ModelState(
            profile: profile,
            burndownRate: configuration.burndownRate(for: modelId, profile: profile),
            referee: QuotaReferee(
                requestsPerWindow: profile.requestsPerMinute,
                tokensPerWindow: profile.tokensPerMinute,
                tokensPerDay: profile.effectiveTokensPerDay,
                window: configuration.quotaWindowSeconds,
                dayWindow: configuration.dayWindowSeconds
            ),
            stats: ModelStatsRecorder(retention: configuration.statsRetentionSeconds)
        )
        models[modelId] = state
        return state
    }

    private func record(_ modelId: String, _ update: (inout SimulatorCounters) -> Void) {
        models[modelId]?.stats.record(second: Int(now.rounded(.down)), update)
    }

    func recordUnauthenticated() { unauthenticatedRequests += 1 }
    func recordUnrouted() { unroutedRequests += 1 }

    /// Decides a Converse request: refuses it with the error Bedrock would send, or admits it and holds
    /// `input + cacheRead + cacheWrite + maxTokens` (the whole input, as Bedrock holds it).
    /// - Parameters:
    ///   - format: How the body names the input.
    ///   - streaming: Whether the answer is streamed (only streams can be given a mid-stream exception).
    func beginConverse(modelId: String, body: Data, format: RequestFormat = .converse, streaming: Bool = false) -> Result<ConversePlan, SimulatedError> {
        // `model` is a snapshot for reading the profile; counters and the referee are changed in `models`.
        guard let model = state(for: modelId) else {
            unroutedRequests += 1
            return .failure(.modelNotFound())
        }
        record(modelId) { $0.received += 1 }
        let request: ConverseRequestBody
        let decoded = switch format {
        case .converse: decode(ConverseRequestBody.self, from: body)
        case .invokeModel: decode(InvokeModelRequestBody.self, from: body).map(\.converse)
        }
        switch decoded {
        case .success(let decoded): request = decoded
        case .failure(let error):
            record(modelId) { $0.validationErrors += 1 }
            return .failure(error)
        }
        let maxTokens: Int
        switch validate(request, profile: model.profile) {
        case .success(let value): maxTokens = value
        case .failure(let error):
            record(modelId) { $0.validationErrors += 1 }
            return .failure(error)
        }
        if let cap = configuration.maxConcurrentConnections, inFlight >= cap {
            record(modelId) { $0.tooManyConnections += 1 }
            return .failure(.tooManyConnections())
        }
        let unavailableRate = model.profile.serviceUnavailableRate ?? configuration.serviceUnavailableRate
        if unavailableRate > 0, faults.unit() < unavailableRate {
            record(modelId) { $0.serviceUnavailable += 1 }
            return .failure(.serviceUnavailable())
        }
        for injected in model.profile.injectedErrors where injected.rate > 0 && faults.unit() < injected.rate {
            record(modelId) { $0.injectedErrors += 1 }
            return .failure(SimulatedError(status: injected.status, errorType: injected.errorType, message: injected.message))
        }
        let instant = now
        if model.profile.overloadPeriods.contains(where: { $0.contains(instant) }) {
            record(modelId) { $0.overloaded += 1 }
            return .failure(.overloaded(modelId))
        }

        let input = counter.count(request)
        let cacheHit = input.prefixKey.map { (cacheExpiry[modelId + "|" + $0] ?? -1) > instant } ?? false
        let cacheRead = cacheHit ? input.cachedPrefix : 0
        let cacheWrite = cacheHit ? 0 : input.cachedPrefix
        let hold = input.uncached + cacheRead + cacheWrite + maxTokens   // the whole input: cache reads too
        let ticket: Int
        switch models[modelId]!.referee.admit(hold: hold, now: instant) {
        case .success(let admitted): ticket = admitted
        case .failure(let refusal):
            switch refusal.refusal {
            case .requests:
                record(modelId) { $0.throttledRequests += 1 }
                return .failure(.throttledRequests())
            case .tokens:
                record(modelId) { $0.throttledTokens += 1 }
                return .failure(.throttledTokens())
            case .tokensPerDay:
                record(modelId) { $0.throttledDaily += 1 }
                return .failure(.throttledDaily())
            }
        }
        if let key = input.prefixKey {
            cacheExpiry[modelId + "|" + key] = instant + configuration.cacheTTLSeconds
        }

        models[modelId]!.admittedCount += 1
        let admittedCount = models[modelId]!.admittedCount
        let outputSeed = configuration.seed ^ SeededRandom.fnv1a(modelId) &+ admittedCount &* 0x9E37_79B9_7F4A_7C15
        let (outputTokens, stopReason) = outputLength(
            request: request, maxTokens: maxTokens, profile: model.profile, seed: outputSeed)
        let latencyMs = model.profile.timeToFirstTokenMs
            + Double(outputTokens) / model.profile.outputTokensPerSecond * 1_000
        let streamError = streaming ? configuration.streamErrors.first { $0.rate > 0 && faults.unit() < $0.rate } : nil
        inFlight += 1
        peakInFlight = max(peakInFlight, inFlight)
        record(modelId) {
            $0.admitted += 1
            $0.tokensHeld += hold
        }
        return .success(ConversePlan(
            modelId: modelId,
            ticket: ticket,
            inputTokens: input.uncached,
            cacheReadInputTokens: cacheRead,
            cacheWriteInputTokens: cacheWrite,
            outputTokens: outputTokens,
            stopReason: stopReason,
            latencyMs: Int(latencyMs.rounded()),
            wallDelay: .milliseconds(latencyMs * configuration.timeScale),
            burndownRate: model.burndownRate,
            outputSeed: outputSeed,
            streamError: streamError,
            timeToFirstTokenMs: model.profile.timeToFirstTokenMs,
            outputTokensPerSecond: model.profile.outputTokensPerSecond
        ))
    }

    /// Settles an admitted request: its hold becomes `input + cacheWrite + output x burndown` (cache reads are
    /// given back).
    /// - Parameter outputTokensSent: For a stream ended by an injected exception, the output sent before it
    ///   (charged instead of the planned output); nil for a complete answer.
    func finishConverse(_ plan: ConversePlan, outputTokensSent: Int? = nil) {
        inFlight -= 1
        let instant = now
        let output = outputTokensSent ?? plan.outputTokens
        let charge = plan.charge(outputTokens: output)
        models[plan.modelId]?.referee.settle(ticket: plan.ticket, charge: charge, now: instant)
        record(plan.modelId) {
            $0.completed += 1
            if outputTokensSent != nil { $0.streamExceptions += 1 }
            $0.inputTokens += plan.inputTokens
            $0.outputTokens += output
            $0.cacheReadInputTokens += plan.cacheReadInputTokens
            $0.cacheWriteInputTokens += plan.cacheWriteInputTokens
            $0.tokensCharged += charge
        }
    }

    /// Counts the input tokens of a CountTokens body (free: no quota, no faults).
    func countTokens(modelId: String, body: Data) -> Result<Int, SimulatedError> {
        guard state(for: modelId) != nil else {
            unroutedRequests += 1
            return .failure(.modelNotFound())
        }
        record(modelId) { $0.countTokensCalls += 1 }
        switch decode(CountTokensRequestBody.self, from: body) {
        case .failure(let error):
            record(modelId) { $0.validationErrors += 1 }
            return .failure(error)
        case .success(let request):
            if let converse = request.input.converse {
                if converse.messages.isEmpty {
                    record(modelId) { $0.validationErrors += 1 }
                    return .failure(.validation("The messages field must not be empty."))
                }
                return .success(counter.count(converse).total)
            }
            if let invoke = request.input.invokeModel {
                return .success(max(1, counter.tokens(characters: invoke.body.count)))
            }
            record(modelId) { $0.validationErrors += 1 }
            return .failure(.validation("Malformed input request: input must contain converse or invokeModel."))
        }
    }

    /// The `GET /stats` document.
    /// - Parameter secondsSince: Only list per-second buckets from this simulated second on (totals are always whole).
    func snapshot(secondsSince: Int? = nil) -> SimulatorStatsSnapshot {
        let instant = now
        var totals = SimulatorCounters()
        var perModel: [String: SimulatorModelStats] = [:]
        for (id, var model) in models {
            model.referee.expire(now: instant)
            models[id] = model
            totals.add(model.stats.totals)
            perModel[id] = SimulatorModelStats(
                limits: SimulatorLimits(
                    requestsPerMinute: model.profile.requestsPerMinute,
                    tokensPerMinute: model.profile.tokensPerMinute,
                    tokensPerDay: model.profile.effectiveTokensPerDay,
                    burndownRate: model.burndownRate
                ),
                windowRequests: model.referee.windowRequests,
                windowTokens: model.referee.windowTokens,
                dayTokens: model.referee.dayTokens,
                peakWindowRequests: model.referee.peakWindowRequests,
                peakWindowTokens: model.referee.peakWindowTokens,
                totals: model.stats.totals,
                seconds: model.stats.seconds(since: secondsSince)
            )
        }
        return SimulatorStatsSnapshot(
            uptimeSeconds: instant * configuration.timeScale,
            simulatedSeconds: instant,
            timeScale: configuration.timeScale,
            quotaWindowSeconds: configuration.quotaWindowSeconds,
            seed: configuration.seed,
            inFlight: inFlight,
            peakInFlight: peakInFlight,
            unroutedRequests: unroutedRequests,
            unauthenticatedRequests: unauthenticatedRequests,
            totals: totals,
            models: perModel
        )
    }

    // MARK: - Helpers

    private func decode<T: Decodable>(_ type: T.Type, from body: Data) -> Result<T, SimulatedError> {
        do {
            return .success(try JSONDecoder().decode(type, from: body))
        } catch DecodingError.keyNotFound(let key, _) {
            return .failure(.validation("Malformed input request: required key [\(key.stringValue)] not found"))
        } catch {
            return .failure(.validation("Malformed input request, please reformat your input and try again."))
        }
    }

    /// Checks the conversation and returns the maxTokens in force.
    private func validate(_ request: ConverseRequestBody, profile: ModelProfile) -> Result<Int, SimulatedError> {
        guard let first = request.messages.first else {
            return .failure(.validation("The messages field must not be empty."))
        }
        guard first.role == "user" else {
            return .failure(.validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message."))
        }
        if let bad = request.messages.first(where: { $0.role != "user" && $0.role != "assistant" }) {
            return .failure(.validation("Invalid role \(bad.role): expected user or assistant."))
        }
        let maxTokens = request.inferenceConfig?.maxTokens ?? profile.defaultMaxTokens ?? profile.maxOutputTokens
        guard maxTokens >= 1 else {
            return .failure(.validation("The maximum tokens you requested must be at least 1."))
        }
        guard maxTokens <= profile.maxOutputTokens else {
            return .failure(.validation(
                "The maximum tokens you requested exceeds the model limit of \(profile.maxOutputTokens). Try again with a maximum tokens value that is lower than \(profile.maxOutputTokens)."))
        }
        return .success(maxTokens)
    }

    /// Output length: `[[sim:output=N]]` in the prompt if present, else log-normal around the model's median;
    /// clamped to maxTokens (then the stop reason is `max_tokens`).
    private func outputLength(
        request: ConverseRequestBody, maxTokens: Int, profile: ModelProfile, seed: UInt64
    ) -> (Int, String) {
        let wanted: Int
        if let forced = Self.forcedOutput(in: request) {
            wanted = forced
        } else {
            var random = SeededRandom(seed: seed)
            let draw = profile.medianOutputTokens * exp(profile.outputTokensSpread * random.standardNormal())
            wanted = Int(min(max(draw, 1), Double(maxTokens)).rounded())  // clamped before Int(): never inf
        }
        return wanted >= maxTokens ? (maxTokens, "max_tokens") : (wanted, "end_turn")
    }

    static func forcedOutput(in request: ConverseRequestBody) -> Int? {
        let marker = "[[sim:output="
        for message in request.messages {
            for block in message.content {
                guard let text = block.text, let range = text.range(of: marker) else { continue }
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if let value = Int(digits) { return max(1, value) }
            }
        }
        return nil
    }
}
