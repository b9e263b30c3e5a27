import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("bedrock-sim quotas, faults and stats")
struct SimulatorQuotaTests {
    @Test("input + maxTokens is held at start: a request that does not fit is throttled even if its output would have")
    func holdRule() async throws {
        try await withSimulator(configure: { configuration in
            configuration.models["tpm-model"] = instantModel(tpm: 1_000, burndown: 1)
        }) { simulator, client in
            let text = "Classify this support ticket by urgency."
            let input = try await client.countTokens(
                modelId: "tpm-model", request: CountTokensRequest(converse: prompt(text, maxTokens: nil, forcedOutput: 5)))
            // Hold = input + maxTokens = 1001 > 1000, although the real charge would be input + 5.
            let refused = await converseError(client, model: "tpm-model",
                                              prompt(text, maxTokens: 1_000 - input + 1, forcedOutput: 5))
            #expect(refused?.kind == .throttledTokens)
            #expect(refused?.status == 429)
            #expect(refused?.message == "Too many tokens, please wait before trying again.")
            // Exactly fitting: admitted, then settled down to input + output.
            let admitted = try await client.converse(modelId: "tpm-model",
                                                     request: prompt(text, maxTokens: 1_000 - input, forcedOutput: 5))
            #expect(admitted.usage.outputTokens == 5)
            var model = try #require(await simulator.stats().models["tpm-model"])
            #expect(model.windowTokens == input + 5)
            #expect(model.totals.throttledTokens == 1)
            #expect(model.totals.tokensHeld == 1_000)
            #expect(model.totals.tokensCharged == input + 5)
            #expect(model.peakWindowTokens == 1_000)
            // The unused hold came back: the next request may hold the rest of the window, and no more.
            let rest = 1_000 - (input + 5)
            let tooBig = await converseError(client, model: "tpm-model", prompt(text, maxTokens: rest - input + 1, forcedOutput: 1))
            #expect(tooBig?.kind == .throttledTokens)
            _ = try await client.converse(modelId: "tpm-model", request: prompt(text, maxTokens: rest - input, forcedOutput: 1))
            model = try #require(await simulator.stats().models["tpm-model"])
            #expect(model.totals.admitted == 2)
            #expect(model.totals.throttledTokens == 2)
        }
    }

    @Test("output is charged x burndown: 5x for Claude Sonnet 4, configurable per model")
    func burndown() async throws {
        let sonnet = "anthropic.claude-sonnet-4-20250514-v1:0"
        try await withSimulator(configure: { configuration in
            configuration.models["custom-3x"] = instantModel(burndown: 3)
        }) { simulator, client in
            let a = try await client.converse(modelId: sonnet, request: prompt(maxTokens: 100, forcedOutput: 10))
            let b = try await client.converse(modelId: "custom-3x", request: prompt(maxTokens: 100, forcedOutput: 10))
            let c = try await client.converse(modelId: "amazon.nova-lite-v1:0", request: prompt(maxTokens: 100, forcedOutput: 10))
            let stats = await simulator.stats()
            #expect(stats.models[sonnet]?.limits.burndownRate == 5)
            #expect(stats.models[sonnet]?.totals.tokensCharged == a.usage.inputTokens + 50)
            // 10 output x 5 = 50 is less than the 100 held for maxTokens, so the window shrank to the charge.
            #expect(stats.models[sonnet]?.windowTokens == a.usage.inputTokens + 50)
            #expect(stats.models[sonnet]?.peakWindowTokens == a.usage.inputTokens + 100)
            #expect(stats.models["custom-3x"]?.totals.tokensCharged == b.usage.inputTokens + 30)
            #expect(stats.models["amazon.nova-lite-v1:0"]?.totals.tokensCharged == c.usage.inputTokens + 10)
        }
    }

    @Test("burndown can charge more than was held; the overage counts against later requests")
    func burndownOverage() async throws {
        let sonnet = "anthropic.claude-sonnet-4-20250514-v1:0"
        try await withSimulator(configure: { configuration in
            configuration.models[sonnet] = instantModel(tpm: 400)
        }) { simulator, client in
            // Hold input + 40; charge input + 40 x 5 = input + 200.
            let first = try await client.converse(modelId: sonnet, request: prompt(maxTokens: 40, forcedOutput: 40))
            let model = try #require(await simulator.stats().models[sonnet])
            #expect(model.totals.tokensHeld == first.usage.inputTokens + 40)
            #expect(model.windowTokens == first.usage.inputTokens + 200)
            #expect(model.peakWindowTokens == first.usage.inputTokens + 200)
            // A hold that would have fitted before the overage no longer does.
            let room = 400 - (first.usage.inputTokens + 200)
            let refused = await converseError(client, model: sonnet, prompt(maxTokens: room - first.usage.inputTokens + 1, forcedOutput: 40))
            #expect(refused?.kind == .throttledTokens)
        }
    }

    @Test("requests per minute and tokens per day throttle with Bedrock's messages")
    func requestsAndDaily() async throws {
        try await withSimulator(configure: { configuration in
            configuration.models["rpm-model"] = instantModel(rpm: 2)
            configuration.models["daily-model"] = instantModel(tpm: 10_000, tpd: 300)
        }) { simulator, client in
            for _ in 0..<2 { _ = try await client.converse(modelId: "rpm-model", request: prompt(maxTokens: 10, forcedOutput: 1)) }
            let third = await converseError(client, model: "rpm-model", prompt(maxTokens: 10))
            #expect(third?.kind == .throttledRequests)
            #expect(third?.message == "Too many requests, please wait before trying again.")

            _ = try await client.converse(modelId: "daily-model", request: prompt(maxTokens: 200, forcedOutput: 1))
            let daily = await converseError(client, model: "daily-model", prompt(maxTokens: 290))
            #expect(daily?.kind == .throttledDaily)
            #expect(daily?.kind.shouldFallBack == true)
            let stats = await simulator.stats()
            #expect(stats.models["rpm-model"]?.totals.throttledRequests == 1)
            #expect(stats.models["daily-model"]?.totals.throttledDaily == 1)
            #expect(stats.models["daily-model"]?.limits.tokensPerDay == 300)
        }
    }

    @Test("the rolling window frees budget after its (time-scaled) length, not before")
    func windowExpiry() async throws {
        try await withSimulator(configure: { configuration in
            configuration.timeScale = 0.02  // a 60 s window lasts 1.2 s
            configuration.models["rpm-model"] = instantModel(rpm: 1)
        }) { _, client in
            let sent = ContinuousClock.now  // the simulator admits no earlier than this
            _ = try await client.converse(modelId: "rpm-model", request: prompt(maxTokens: 10, forcedOutput: 1))
            #expect(await converseError(client, model: "rpm-model", prompt(maxTokens: 10))?.kind == .throttledRequests)
            let freed = try await firstSuccess(within: .seconds(5)) {
                await converseError(client, model: "rpm-model", prompt(maxTokens: 10, forcedOutput: 1))
            }
            #expect(freed - sent >= .seconds(1.19))
        }
    }

    @Test("a scheduled overload period answers 'currently overloaded' and ends on time")
    func overload() async throws {
        let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0"
        try await withSimulator(configure: { configuration in
            configuration.timeScale = 0.01
            var profile = instantModel()
            // The first 4 s of wall time: long enough that the first request lands inside it on a loaded machine.
            profile.overloadPeriods = [SimulatedPeriod(startSeconds: 0, durationSeconds: 400)]
            configuration.models[haiku] = profile
        }) { simulator, client in
            let error = await converseError(client, model: haiku, prompt(maxTokens: 10))
            #expect(error?.kind == .modelOverloaded)
            #expect(error?.message == "Model \(haiku) is currently overloaded. Please try again later.")
            #expect(error?.kind.shouldFallBack == true)
            #expect(error?.kind.isQuotaThrottle == false)
            _ = try await firstSuccess(within: .seconds(12)) {
                await converseError(client, model: haiku, prompt(maxTokens: 10, forcedOutput: 1))
            }
            let stats = await simulator.stats()
            #expect(stats.simulatedSeconds >= 400)
            let totals = stats.models[haiku]?.totals
            #expect((totals?.overloaded ?? 0) >= 1)
            #expect(totals?.admitted == 1)
        }
    }

    @Test("503 injection at a rate: counted, classified, never charged")
    func serviceUnavailableInjection() async throws {
        try await withSimulator(configure: { configuration in
            configuration.seed = 7
            configuration.serviceUnavailableRate = 0.4
        }) { simulator, client in
            var unavailable = 0
            for _ in 0..<40 {
                if let error = await converseError(client, model: "m", prompt(maxTokens: 10, forcedOutput: 1)) {
                    #expect(error.kind == .serviceUnavailable)
                    #expect(error.kind.countsAsBreakerFailure)
                    unavailable += 1
                }
            }
            #expect((6...26).contains(unavailable))
            let totals = try #require(await simulator.stats().models["m"]?.totals)
            #expect(totals.serviceUnavailable == unavailable)
            #expect(totals.admitted == 40 - unavailable)
            #expect(totals.received == 40)
        }
    }

    @Test("more concurrent requests than the connection cap get 503 'Too many connections'")
    func connectionCap() async throws {
        try await withSimulator(configure: { configuration in
            configuration.maxConcurrentConnections = 2
            configuration.models["slowish"] = ModelProfile(timeToFirstTokenMs: 1_500, outputTokensPerSecond: 1_000_000)
        }) { simulator, client in
            let errors = await withTaskGroup(of: BedrockError?.self) { group in
                for _ in 0..<5 {
                    group.addTask { await converseError(client, model: "slowish", prompt(maxTokens: 10, forcedOutput: 1)) }
                }
                return await group.reduce(into: [BedrockError?]()) { $0.append($1) }
            }
            let refused = errors.compactMap { $0 }
            #expect(refused.count == 3)
            #expect(refused.allSatisfy { $0.kind == .tooManyConnections })
            #expect(refused.allSatisfy { !$0.kind.countsAsBreakerFailure })
            let stats = await simulator.stats()
            #expect(stats.peakInFlight == 2)
            #expect(stats.models["slowish"]?.totals.tooManyConnections == 3)
        }
    }

    @Test("the same seed gives the same faults and output lengths; another seed differs")
    func determinism() async throws {
        func run(seed: UInt64) async throws -> [String] {
            try await withSimulator(configure: { configuration in
                configuration.seed = seed
                var profile = instantModel()
                profile.serviceUnavailableRate = 0.3
                profile.medianOutputTokens = 40
                configuration.models["m"] = profile
            }) { _, client in
                var outcomes: [String] = []
                for _ in 0..<20 {
                    do {
                        let response = try await client.converse(modelId: "m", request: prompt(maxTokens: 500))
                        outcomes.append("ok:\(response.usage.outputTokens):\(response.text.hashValue)")
                    } catch let error as BedrockError {
                        outcomes.append(error.kind.rawValue)
                    }
                }
                return outcomes
            }
        }
        let first = try await run(seed: 42)
        let second = try await run(seed: 42)
        let other = try await run(seed: 43)
        #expect(first == second)
        #expect(first != other)
        #expect(Set(first.filter { $0.hasPrefix("ok:") }).count > 3)
    }

    @Test("GET /stats serves per-model, per-second counters that add up to the totals")
    func statsOverHTTP() async throws {
        try await withSimulator(configure: { configuration in
            configuration.models["rpm-model"] = instantModel(rpm: 3)
        }) { simulator, client in
            for _ in 0..<5 { _ = await converseError(client, model: "rpm-model", prompt(maxTokens: 10, forcedOutput: 2)) }
            let port = try #require(await simulator.port)
            let (status, _, data) = try await rawRequest(URL(string: "http://127.0.0.1:\(port)/stats")!, method: "GET")
            #expect(status == 200)
            let stats = try JSONDecoder().decode(SimulatorStatsSnapshot.self, from: data)
            let model = try #require(stats.models["rpm-model"])
            #expect(model.totals.received == 5)
            #expect(model.totals.admitted == 3)
            #expect(model.totals.throttledRequests == 2)
            #expect(model.windowRequests == 3)
            #expect(model.limits.requestsPerMinute == 3)
            var summed = SimulatorCounters()
            for second in model.seconds {
                summed.received += second.counters.received
                summed.admitted += second.counters.admitted
                summed.tokensCharged += second.counters.tokensCharged
            }
            #expect(summed.received == 5)
            #expect(summed.admitted == 3)
            #expect(summed.tokensCharged == model.totals.tokensCharged)
            #expect(stats.totals.received == 5)

            let last = try #require(model.seconds.last?.second)
            let (_, _, recent) = try await rawRequest(URL(string: "http://127.0.0.1:\(port)/stats?since=\(last + 1)")!, method: "GET")
            let later = try JSONDecoder().decode(SimulatorStatsSnapshot.self, from: recent)
            #expect(later.models["rpm-model"]?.seconds.isEmpty == true)
            #expect(later.models["rpm-model"]?.totals.received == 5)
        }
    }
}

@Suite("bedrock-sim configuration")
struct SimulatorConfigurationTests {
    @Test("a JSON config file fills only what it names and keeps defaults elsewhere")
    func jsonConfig() throws {
        let json = """
        {"port": 0, "timeScale": 0.01, "seed": 9, "maxConcurrentConnections": 32,
         "models": {"anthropic.claude-sonnet-4-20250514-v1:0": {"requestsPerMinute": 50, "tokensPerMinute": 200000,
            "overloadPeriods": [{"startSeconds": 120, "durationSeconds": 60}],
            "injectedErrors": [{"status": 500, "errorType": "InternalServerException", "message": "boom", "rate": 0.01}]}}}
        """
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bedrock-sim-\(UUID().uuidString).json")
        try Data(json.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let configuration = try SimulatorConfiguration.load(from: url)
        try configuration.validate()
        #expect(configuration.timeScale == 0.01)
        #expect(configuration.quotaWindowSeconds == 60)
        #expect(configuration.maxConcurrentConnections == 32)
        let profile = try #require(configuration.models["anthropic.claude-sonnet-4-20250514-v1:0"])
        #expect(profile.requestsPerMinute == 50)
        #expect(profile.effectiveTokensPerDay == 200_000 * 1_440)
        #expect(profile.maxOutputTokens == 8_192)
        #expect(profile.overloadPeriods.count == 1)
        #expect(configuration.burndownRate(for: "anthropic.claude-sonnet-4-20250514-v1:0", profile: profile) == 5)
        #expect(configuration.defaultModel != nil)
    }

    @Test("bad config files and values are named in the error")
    func badConfig() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bedrock-sim-\(UUID().uuidString).json")
        try Data(#"{"timeScale": "fast"}"#.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect { try SimulatorConfiguration.load(from: url) } throws: { error in
            "\(error)".contains("timeScale")
        }
        var configuration = SimulatorConfiguration()
        configuration.serviceUnavailableRate = 2
        #expect { try configuration.validate() } throws: { "\($0)".contains("serviceUnavailableRate") }
        #expect(throws: SimulatorConfigurationError.self) { try SimulatorServer(configuration: configuration) }
    }

    @Test("command-line model and overload specs parse; bad keys are named")
    func modelSpecs() throws {
        let parsed = try ModelSpec.parseModel("anthropic.claude-sonnet-4-20250514-v1:0@rpm=50,tpm=200000,burndown=5,ttft-ms=250")
        #expect(parsed.id == "anthropic.claude-sonnet-4-20250514-v1:0")
        #expect(parsed.profile.requestsPerMinute == 50)
        #expect(parsed.profile.tokensPerMinute == 200_000)
        #expect(parsed.profile.burndownRate == 5)
        #expect(parsed.profile.timeToFirstTokenMs == 250)
        #expect(try ModelSpec.parseModel("amazon.nova-lite-v1:0").profile == ModelProfile())
        let overload = try ModelSpec.parseOverload("amazon.nova-lite-v1:0@30+15")
        #expect(overload.period == SimulatedPeriod(startSeconds: 30, durationSeconds: 15))
        #expect { try ModelSpec.parseModel("m@rpx=1") } throws: { "\($0)".contains("rpx") }
        #expect { try ModelSpec.parseModel("m@rpm=lots") } throws: { "\($0)".contains("rpm=lots") }
        #expect(throws: SimulatorConfigurationError.self) { try ModelSpec.parseOverload("m@30") }
    }
}
