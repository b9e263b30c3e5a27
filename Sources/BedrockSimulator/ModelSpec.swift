/// Parses the command-line shorthand for model profiles and overload periods.
///
/// A model spec is `MODEL_ID@key=value,key=value` (model ids contain `:`, so `@` separates), keys:
/// `rpm`, `tpm`, `tpd`, `burndown`, `max-output`, `default-max-tokens`, `ttft-ms`, `tps`, `median-output`,
/// `spread`, `unavailable-rate`. A spec without `@` is a model with no limits. An overload spec is
/// `MODEL_ID@START+DURATION` in simulated seconds.
public enum ModelSpec {
    /// Parses `MODEL_ID@key=value,...`.
    /// - Parameters:
    ///   - spec: The spec.
    ///   - base: The profile the keys modify (defaults for unset keys).
    /// - Throws: ``SimulatorConfigurationError`` naming the bad key or value.
    public static func parseModel(_ spec: String, base: ModelProfile = ModelProfile()) throws -> (id: String, profile: ModelProfile) {
        let (id, settings) = split(spec)
        guard !id.isEmpty else { throw SimulatorConfigurationError(message: "model spec '\(spec)' has no model id") }
        return (id, try parseSettings(settings ?? "", base: base, context: spec))
    }

    /// Parses `key=value,...` into a profile (used for `--default-model`).
    /// - Throws: ``SimulatorConfigurationError`` naming the bad key or value.
    public static func parseSettings(_ settings: String, base: ModelProfile = ModelProfile(), context: String? = nil) throws -> ModelProfile {
        var profile = base
        let where_ = context ?? settings
        for pair in settings.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
            guard parts.count == 2 else {
                throw SimulatorConfigurationError(message: "'\(pair)' in '\(where_)' is not key=value")
            }
            let (key, value) = (parts[0], parts[1])
            func int() throws -> Int {
                guard let number = Int(value) else {
                    throw SimulatorConfigurationError(message: "\(key)=\(value) in '\(where_)': not an integer")
                }
                return number
            }
            func double() throws -> Double {
                guard let number = Double(value) else {
                    throw SimulatorConfigurationError(message: "\(key)=\(value) in '\(where_)': not a number")
                }
                return number
            }
            switch key {
            case "rpm": profile.requestsPerMinute = try int()
            case "tpm": profile.tokensPerMinute = try int()
            case "tpd": profile.tokensPerDay = try int()
            case "burndown": profile.burndownRate = try double()
            case "max-output": profile.maxOutputTokens = try int()
            case "default-max-tokens": profile.defaultMaxTokens = try int()
            case "ttft-ms": profile.timeToFirstTokenMs = try double()
            case "tps": profile.outputTokensPerSecond = try double()
            case "median-output": profile.medianOutputTokens = try double()
            case "spread": profile.outputTokensSpread = try double()
            case "unavailable-rate": profile.serviceUnavailableRate = try double()
            default:
                throw SimulatorConfigurationError(message: "unknown key '\(key)' in '\(where_)' (known: rpm, tpm, tpd, burndown, max-output, default-max-tokens, ttft-ms, tps, median-output, spread, unavailable-rate)")
            }
        }
        return profile
    }

    /// Parses `MODEL_ID@START+DURATION` (simulated seconds).
    /// - Throws: ``SimulatorConfigurationError`` if the shape or numbers are wrong.
    public static func parseOverload(_ spec: String) throws -> (id: String, period: SimulatedPeriod) {
        let (id, window) = split(spec)
        let numbers = window?.split(separator: "+").map { Double($0.trimmingWhitespace()) }
        guard !id.isEmpty, let numbers, numbers.count == 2, let start = numbers[0], let duration = numbers[1],
              start >= 0, duration > 0
        else {
            throw SimulatorConfigurationError(message: "overload spec '\(spec)' is not MODEL_ID@START+DURATION (seconds)")
        }
        return (id, SimulatedPeriod(startSeconds: start, durationSeconds: duration))
    }

    private static func split(_ spec: String) -> (String, String?) {
        guard let at = spec.lastIndex(of: "@") else { return (spec.trimmingWhitespace(), nil) }
        return (spec[..<at].trimmingWhitespace(), String(spec[spec.index(after: at)...]))
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
