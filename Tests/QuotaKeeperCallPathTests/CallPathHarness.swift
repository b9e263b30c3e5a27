import BedrockErrors
import Foundation
import Logging
import QuotaKeeper
import QuotaKeeperTestSupport
import Synchronization

/// A ledger with unique budgets on the shared test Redis, plus helpers to script a Bedrock double.
struct CallPathHarness {
    let redis: RedisClient
    let ledger: QuotaLedger
    let prefix: String
    let primary: BudgetID
    let secondary: BudgetID

    init(
        rpm: Int = 1000, tpm: Int = 1_000_000, window: Duration = .seconds(4), breaker: BreakerConfiguration = .init(),
        redisURL: String = TestRedis.url, logger: Logger = Logger(label: "test")
    ) throws {
        var configuration = try RedisConfiguration(url: redisURL)
        configuration.timeouts.command = .milliseconds(500)
        configuration.timeouts.connect = .milliseconds(500)
        redis = RedisClient(configuration: configuration)
        prefix = "qk-test-\(UUID().uuidString.prefix(8)):"
        primary = BudgetID(model: "anthropic.claude-sonnet-4-20250514-v1:0", region: "us-east-1")
        secondary = BudgetID(model: "anthropic.claude-3-haiku-20240307-v1:0", region: "us-west-2")
        let budgets = [primary, secondary].map { id in
            var budget = BudgetConfiguration(id: id, limits: .init(requestsPerWindow: rpm, tokensPerWindow: tpm))
            budget.window = window
            budget.bucketCount = 8
            budget.breaker = breaker
            return budget
        }
        ledger = try QuotaLedger(redis: redis, keyPrefix: prefix, budgets: budgets, logger: logger)
    }

    func coordinator(_ configure: (inout CallPathConfiguration) -> Void = { _ in }, logger: Logger = Logger(label: "test")) -> CallCoordinator {
        var configuration = CallPathConfiguration()
        configuration.retry.baseDelay = .milliseconds(5)
        configuration.retry.maximumDelay = .milliseconds(20)
        configure(&configuration)
        return CallCoordinator(ledger: ledger, configuration: configuration, logger: logger)
    }

    var route: [BudgetID] { [primary, secondary] }

    func cleanUp() async throws {
        try await TestRedis.deleteKeys(matching: prefix, using: redis)
        await redis.shutdown()
    }
}

/// A scripted stand-in for Bedrock: answers each call on a target from a queue of outcomes.
final class BedrockDouble: Sendable {
    enum Answer: Sendable {
        case success(input: Int, output: Int)
        case failure(BedrockErrorKind)
        case hang
    }

    private let script: Mutex<[BudgetID: [Answer]]>
    private let calls = Mutex<[BudgetID]>([])

    init(_ script: [BudgetID: [Answer]]) { self.script = Mutex(script) }

    /// Targets called, in order.
    var callLog: [BudgetID] { calls.withLock { $0 } }

    func callCount(_ target: BudgetID) -> Int { callLog.filter { $0 == target }.count }

    /// The closure the call path runs; `prompt` stands for request content that must never be logged.
    func call(_ target: BudgetID, prompt: String) async throws -> CallCompletion<String> {
        calls.withLock { $0.append(target) }
        let answer = script.withLock { queue -> Answer in
            guard var answers = queue[target], !answers.isEmpty else { return .success(input: 10, output: 5) }
            let next = answers.removeFirst()
            queue[target] = answers.isEmpty ? [next] : answers  // the last answer repeats
            return next
        }
        switch answer {
        case .success(let input, let output):
            return CallCompletion(value: "answer to \(prompt.count) characters", usage: TokenUsage(inputTokens: input, outputTokens: output))
        case .failure(let kind):
            throw BedrockError(kind: kind, status: 503, errorType: "TestException", message: "scripted \(kind.rawValue)", source: .http)
        case .hang:
            try await Task.sleep(for: .seconds(30))
            throw CancellationError()
        }
    }
}
