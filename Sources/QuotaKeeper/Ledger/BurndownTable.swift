/// How many tokens of quota one output token burns, per model (Bedrock charges
/// `input + cache-write + output x burndown` at the end of a call).
///
/// A model id matches a rule when it contains the rule's pattern; the longest matching pattern wins, so
/// overrides can be as specific as needed. Unmatched models use `defaultRate`.
public struct BurndownTable: Sendable, Hashable {
    /// Pattern (a substring of model ids) -> output multiplier.
    public var rates: [String: Double]
    /// The multiplier of models no pattern matches.
    public var defaultRate: Double

    public init(rates: [String: Double] = [:], defaultRate: Double = 1) {
        self.rates = rates
        self.defaultRate = defaultRate
    }

    /// 5x for the Claude models AWS documents with a 5x output burndown (3.7 Sonnet, Sonnet 4, Sonnet 4.5,
    /// Opus 4 and the 4.6 generation), 1x for every other model. Geo and global profile ids (`us.`, `global.`)
    /// match too.
    public static let bedrockDefaults = BurndownTable(rates: [
        "anthropic.claude-3-7-sonnet": 5,
        "anthropic.claude-sonnet-4-2": 5,     // Sonnet 4 (dated ids: claude-sonnet-4-20250514-v1:0)
        "anthropic.claude-sonnet-4-5": 5,
        "anthropic.claude-opus-4-2": 5,       // Opus 4 (claude-opus-4-20250514-v1:0)
        "anthropic.claude-opus-4-6": 5,
        "anthropic.claude-sonnet-4-6": 5,
    ])

    /// The multiplier for `model`.
    public func rate(for model: String) -> Double {
        var best: (length: Int, rate: Double)?
        for (pattern, rate) in rates where Self.occurs(pattern, in: model) {
            if best == nil || pattern.utf8.count > best!.length { best = (pattern.utf8.count, rate) }
        }
        return best?.rate ?? defaultRate
    }

    /// Whether `pattern` occurs in `model`, compared byte for byte in UTF-8. (Every settlement asks: Foundation's
    /// `contains` took a tenth of a busy process's CPU, the stdlib's generic `firstRange(of:)` more.)
    private static func occurs(_ pattern: String, in model: String) -> Bool {
        var model = model, pattern = pattern
        return model.withUTF8 { haystack in
            pattern.withUTF8 { needle in
                guard needle.count <= haystack.count else { return false }
                return (0...(haystack.count - needle.count)).contains { start in
                    (0..<needle.count).allSatisfy { haystack[start + $0] == needle[$0] }
                }
            }
        }
    }

    /// What Bedrock charges for a finished call of `model`: `input + cache-write + ceil(output x burndown)`;
    /// cache reads are held at admission but not charged. The one charge formula: settle sends its result to
    /// `lua/ledger_settle.lua`, and fail-open's local holds use it too.
    public func charge(_ usage: TokenUsage, model: String) -> Int {
        usage.inputTokens + usage.cacheWriteInputTokens + Int((Double(usage.outputTokens) * rate(for: model)).rounded(.up))
    }

    /// A copy with `rate` for models containing `pattern`.
    public func overriding(_ pattern: String, with rate: Double) -> BurndownTable {
        var copy = self
        copy.rates[pattern] = rate
        return copy
    }
}
