import Foundation

/// One application of the fleet: its demand and the shape of its requests.
struct AppSpec: Codable, Sendable, Hashable {
    /// The app's name (1-64 characters of `A-Z a-z 0-9 . _ -`).
    var name: String
    /// Requests per (simulated) minute the app wants to send.
    var demandRPM: Double
    var inputTokens: Int
    /// The request's `maxTokens`: what Bedrock holds at admission besides the input.
    var maxOutputTokens: Int
    /// The output the simulator produces for each request (`[[sim:output=N]]`).
    var outputTokens: Int
    /// `interactive` or `batch` (QuotaKeeper's priority; the uncoordinated mode ignores it).
    var priority: String = "interactive"
    /// Each request's deadline in simulated seconds (QuotaKeeper's whole-call deadline).
    var deadlineSeconds: Double = 30
    /// Simulated seconds after the mode's start when the app begins sending (e.g. a batch job that starts
    /// while the chat apps are already running).
    var startSeconds: Double = 0

    /// Tokens Bedrock holds at admission.
    var heldTokens: Int { inputTokens + maxOutputTokens }
}

/// An overload period of the primary model, in wall seconds since the mode's start.
struct OverloadPeriod: Codable, Sendable, Hashable {
    var start: Double
    var end: Double
}

/// Everything a run needs, shared by the orchestrator and every app instance (passed to them as JSON).
struct FleetSettings: Codable, Sendable {
    var scenario: String
    var apps: [AppSpec]
    var primaryModel: String
    /// The route's second target in coordinated mode (nil: no fallback).
    var fallbackModel: String?
    /// The Bedrock Runtime operation every app calls.
    var api: FleetAPI = .converse
    var region: String = "us-east-1"
    /// The quota of each model (RPM and TPM per minute, Bedrock's terms); nil = not enforced.
    var quotaRPM: Int?
    var quotaTPM: Int?
    /// Wall seconds that stand for Bedrock's 60-second quota window (the time scale).
    var windowSeconds: Double
    /// Wall seconds each mode drives demand.
    var durationSeconds: Double
    /// Probability of an injected 503 per request on the primary model.
    var fault503Rate: Double = 0
    var overload: OverloadPeriod?
    var seed: UInt64 = 1
    /// QuotaKeeper's share of each limit that batch callers may use.
    var batchCeiling: Double = 0.8
    /// The ledger's hop margin in wall milliseconds (`BudgetConfiguration.hopMargin`): the time from an admission
    /// to the simulator's own on this machine. Not time-scaled, unlike everything else: the library's default
    /// (250 ms, kept here) is 0.4% of Bedrock's 60 s window but 2% of the presets' 12 s one, and the ledger counts
    /// it into every window (12.3 s in 246 buckets of 50 ms: `FleetBudgets.bucketCount`), which caps utilization
    /// at 12 / 12.3 = 97.6% (at a 6 s window, 6.3 s: 95.2%). The referee's quota 429s say whether a margin was
    /// enough.
    var hopMarginMilliseconds: Int = 250
    /// Simulated first-token latency and output speed of both models.
    var firstTokenMilliseconds: Int = 400
    var outputTokensPerSecond: Int = 200

    /// Wall seconds per simulated second.
    var timeScale: Double { windowSeconds / 60 }

    /// The wall duration that stands for `simulatedSeconds` of Bedrock time.
    func wall(_ simulatedSeconds: Double) -> Duration {
        .nanoseconds(Int64((simulatedSeconds * timeScale * 1e9).rounded()))
    }

    /// Total demand in requests per minute.
    var demandRPM: Double { apps.reduce(0) { $0 + $1.demandRPM } }

    /// Total demand in tokens per minute, as Bedrock finally charges it (input + output).
    var demandTPM: Double { apps.reduce(0) { $0 + $1.demandRPM * Double($1.inputTokens + $1.outputTokens) } }

    /// Simulated seconds after the mode's start from which every app is sending.
    var fullDemandStartSeconds: Double { apps.map(\.startSeconds).max() ?? 0 }

    /// Whether the fleet's demand exceeds a quota (so the quota should be used to the full).
    var demandExceedsQuota: Bool {
        if let quotaRPM, demandRPM > Double(quotaRPM) { return true }
        if let quotaTPM, demandTPM > Double(quotaTPM) { return true }
        return false
    }
}

/// The named presets of `--scenario`.
enum Scenario: String, CaseIterable, Sendable {
    /// The article's three apps at 60/50/50 RPM against a 150 RPM quota.
    case spike
    /// A batch app at 10 RPM of 15,000 in / 5,000 out against a TPM quota, plus two small chat apps.
    case tokens
    /// 503s and an overload period on the primary model; the fallback serves meanwhile.
    case outage
    /// Nine apps at 50 RPM each against a 150 RPM quota: three times the quota, waiting in the budget's line.
    case overload

    static let primaryModel = "anthropic.claude-haiku-4-5-20251001-v1:0"
    static let fallbackModel = "amazon.nova-pro-v1:0"

    /// The preset's settings (a 12 s window standing for 60 s, 60 s of demand per mode: 5 quota windows). The
    /// scale is 5x, not more: the hop margin is not time-scaled (`hopMarginMilliseconds`), so the faster the
    /// demo runs, the more of its window the margin takes.
    var settings: FleetSettings {
        switch self {
        case .spike:
            let apps = [("app-a", 60.0), ("app-b", 50.0), ("app-c", 50.0)].map {
                AppSpec(name: $0.0, demandRPM: $0.1, inputTokens: 1_000, maxOutputTokens: 400, outputTokens: 200)
            }
            return FleetSettings(
                scenario: rawValue, apps: apps, primaryModel: Self.primaryModel, fallbackModel: nil,
                quotaRPM: 150, quotaTPM: nil, windowSeconds: 12, durationSeconds: 60)
        case .tokens:
            let apps = [
                AppSpec(name: "batch", demandRPM: 10, inputTokens: 15_000, maxOutputTokens: 5_000, outputTokens: 5_000,
                        priority: "batch", deadlineSeconds: 120, startSeconds: 60),
                AppSpec(name: "chat-a", demandRPM: 30, inputTokens: 600, maxOutputTokens: 300, outputTokens: 150),
                AppSpec(name: "chat-b", demandRPM: 30, inputTokens: 600, maxOutputTokens: 300, outputTokens: 150),
            ]
            var settings = FleetSettings(
                scenario: rawValue, apps: apps, primaryModel: Self.primaryModel, fallbackModel: nil,
                quotaRPM: nil, quotaTPM: 150_000, windowSeconds: 12, durationSeconds: 60)
            // The batch job starts one window after the chat apps (as a job starts while users are active).
            // The batch ceiling bounds the *total* window usage at which batch calls are still admitted, and
            // the chat apps' steady usage (45,000 tokens a minute) is already inside that total, so the headroom
            // above it only absorbs chat bursts: 0.98 leaves 3,000 tokens (3 chat requests) and lets five
            // 20,000-token batch requests a minute fill the rest (145,000 of 150,000). At the library default of
            // 0.8 they would leave a fifth of the quota unused; at 0.97 the fifth batch request fits only while
            // the chat apps hold at most 45,500 tokens, so utilization flips between 84% and 97% run to run.
            settings.batchCeiling = 0.98
            return settings
        case .outage:
            let apps = [("app-a", 40.0), ("app-b", 30.0), ("app-c", 30.0)].map {
                AppSpec(name: $0.0, demandRPM: $0.1, inputTokens: 1_000, maxOutputTokens: 400, outputTokens: 200)
            }
            var settings = FleetSettings(
                scenario: rawValue, apps: apps, primaryModel: Self.primaryModel, fallbackModel: Self.fallbackModel,
                quotaRPM: 150, quotaTPM: nil, windowSeconds: 12, durationSeconds: 60)
            settings.fault503Rate = 0.05
            settings.overload = OverloadPeriod(start: 20, end: 40)
            return settings
        case .overload:
            let apps = (1...9).map {
                AppSpec(name: "app-\($0)", demandRPM: 50, inputTokens: 1_000, maxOutputTokens: 400, outputTokens: 200)
            }
            return FleetSettings(
                scenario: rawValue, apps: apps, primaryModel: Self.primaryModel, fallbackModel: nil,
                quotaRPM: 150, quotaTPM: nil, windowSeconds: 12, durationSeconds: 60)
        }
    }
}
