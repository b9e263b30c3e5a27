import Foundation

/// What a call will hold: Bedrock reserves the whole input (uncached, cache reads and cache writes) + max
/// output at the start, and releases the cache reads at settlement.
public struct CallEstimate: Sendable, Hashable {
    /// Uncached input tokens (from CountTokens, or an estimate: settlement corrects the ledger).
    public var inputTokens: Int
    /// The request's `maxTokens`.
    public var maxOutputTokens: Int
    /// Prompt-cache writes expected (held, and charged like input).
    public var cacheWriteTokens: Int
    /// Prompt-cache reads expected (held at the start, given back at settlement).
    public var cacheReadTokens: Int

    public init(inputTokens: Int, maxOutputTokens: Int, cacheWriteTokens: Int = 0, cacheReadTokens: Int = 0) {
        self.inputTokens = inputTokens
        self.maxOutputTokens = maxOutputTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.cacheReadTokens = cacheReadTokens
    }

    /// The tokens held at admission, as Bedrock holds them: input + cache reads + cache writes + max output.
    public var heldTokens: Int { inputTokens + cacheReadTokens + cacheWriteTokens + maxOutputTokens }
}

/// Who is calling, how important it is, and how long it may take.
public struct CallOptions: Sendable {
    /// The calling app (1-64 characters of `A-Z a-z 0-9 . _ -`), for attribution and caps.
    public var app: String
    public var priority: Priority
    /// The whole call, every target, wait and retry included, ends within this.
    public var deadline: Duration
    /// The longest wait for budget on one target before falling over to the next (nil: up to the deadline
    /// on the last target, and none on the others, where falling over is faster than waiting).
    public var maximumWaitPerTarget: Duration?
    /// How long the Bedrock call itself takes; admission leaves this much of the deadline for it, so a caller
    /// never takes budget it cannot use (nil: learned per target from the coordinator's successful calls, see
    /// `CallPathPolicy.expectedCallTime(after:observed:)`; zero until a call on the target succeeded).
    public var expectedCallTime: Duration?
    /// Correlates log lines of one call; never contains request content.
    public var requestID: String

    public init(
        app: String, priority: Priority = .interactive, deadline: Duration = .seconds(30),
        maximumWaitPerTarget: Duration? = nil, expectedCallTime: Duration? = nil, requestID: String = UUID().uuidString
    ) {
        self.app = app
        self.priority = priority
        self.deadline = deadline
        self.maximumWaitPerTarget = maximumWaitPerTarget
        self.expectedCallTime = expectedCallTime
        self.requestID = requestID
    }
}

/// What the caller's closure returns: its value and the usage Bedrock reported.
public struct CallCompletion<Value: Sendable>: Sendable {
    public var value: Value
    public var usage: TokenUsage

    public init(value: Value, usage: TokenUsage) {
        self.value = value
        self.usage = usage
    }
}

/// A call that succeeded: the value, which target served it, and what it took.
public struct CallResult<Value: Sendable>: Sendable {
    public var value: Value
    /// The target that served the call.
    public var target: BudgetID
    /// Whether it was not the route's first target.
    public var isFallback: Bool
    /// Bedrock calls made, across targets.
    public var attempts: Int
    /// Time spent waiting for budget or backing off.
    public var waited: Duration
    /// Why earlier targets were not used (empty when the first target served it at once).
    public var skipped: [TargetFailure]
    /// Tokens charged by the ledger for the serving call.
    public var chargedTokens: Int?
}
