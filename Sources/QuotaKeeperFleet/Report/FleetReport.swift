import BedrockSimulator
import Foundation
import Histogram

/// The whole run: settings and one report per mode (the `--json` document).
struct FleetReport: Codable, Sendable {
    var settings: FleetSettings
    var modes: [ModeReport]
}

/// One mode of the scenario: per app, the fleet total, the referee's view and the timeline.
struct ModeReport: Codable, Sendable {
    var mode: String
    var apps: [AppSummary]
    var fleet: AppSummary
    /// Openings of the shared breakers (coordinated) or of the per-process breakers, summed (uncoordinated).
    var breakerOpenings: Int
    /// Redis round trips (script calls) the app instances made, per request and in all (from the instances'
    /// own call-path metrics, so a Redis restart does not reset them; 0 in the uncoordinated mode).
    var redisRoundTripsPerRequest: Double
    var redisRoundTrips: Int
    /// The ledger's answers to the reservation attempts of every instance, by result (`admitted`, `queued`, or
    /// the denial's reason, e.g. `rpm`): what the round trips were spent on (coordinated mode).
    var reservationAnswers: [String: Int]?
    /// Requests that reached the primary model during its overload period (outage scenario), and how many of
    /// them it answered "overloaded".
    var primaryRequestsDuringOverload: Int?
    /// What the simulator saw, per model.
    var referee: [String: RefereeSummary]
    /// Per simulated second since the mode's start, per model.
    var timeline: [String: [TimelineSecond]]
    /// Wall seconds the mode took (demand plus the wait for the last answers).
    var wallSeconds: Double
    /// Where the quota numbers come from: the simulator's `/stats`, or (any other endpoint) the app instances.
    var source: Source = .simulatorStats
    /// Without a referee: the configured quota used by successful calls on the primary model (see
    /// `Orchestrator.observedUtilization`).
    var observedUtilization: Double?
    /// `--redis-fault` (coordinated mode): each fault as applied and what the fleet saw around it.
    var redisFaults: [FaultReport]?
    /// With faults: the median wall time between consecutive admissions of the whole mode, to compare their
    /// gaps with.
    var admissionGapMedianSeconds: Double?

    enum Source: String, Codable, Sendable {
        case simulatorStats = "bedrock-sim /stats"
        case appInstances = "app instances"
    }
}

/// What one app (or the whole fleet) got, as its callers saw it.
struct AppSummary: Codable, Sendable {
    var app: String
    var attempted = 0
    var succeeded = 0
    /// Requests that ended with a typed error, by error.
    var failed = 0
    var failures: [String: Int] = [:]
    /// Requests without any answer (an instance died): must be zero.
    var lost = 0
    /// Answers (success or typed error) that came after the request's deadline.
    var late = 0
    /// Bedrock answers seen per attempt, by error kind.
    var errorsSeen: [String: Int] = [:]
    var fallbacksServed = 0
    var breakerOpenings = 0
    /// Redis round trips per request, from the instances' call-path metrics.
    var redisRoundTripsPerRequest = 0.0
    /// Latency including waits and retries, in simulated (Bedrock-time) seconds.
    var latencyP50 = 0.0
    var latencyP95 = 0.0
    var latencyP99 = 0.0

    /// 429 quota throttles seen (requests, tokens, daily, unknown).
    var quotaThrottles = 0
    /// 429 "model is currently overloaded" seen.
    var overloaded = 0
    /// 503s seen (service unavailable, too many connections).
    var unavailable = 0

    init(app: String) { self.app = app }

    /// Summarises one or more instances' reports; latencies in simulated seconds.
    init(app: String, reports: [AppReport], expected: Int, timeScale: Double) {
        self.app = app
        var latencies = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        latencies.autoResize = true
        for report in reports {
            for request in report.requests {
                attempted += 1
                if request.succeeded {
                    succeeded += 1
                    if request.isFallback { fallbacksServed += 1 }
                } else {
                    failed += 1
                    failures[request.error ?? "unknown", default: 0] += 1
                }
                if !request.withinDeadline { late += 1 }
                _ = latencies.record(UInt64(max(0, request.latencyMilliseconds)))
            }
            errorsSeen.merge(report.errorsSeen, uniquingKeysWith: +)
            redisRoundTripsPerRequest += Double(report.redisRoundTrips)
            breakerOpenings += report.breakerOpenings
        }
        lost = max(0, expected - attempted)
        attempted = max(attempted, expected)
        redisRoundTripsPerRequest = attempted > 0 ? redisRoundTripsPerRequest / Double(attempted) : 0
        quotaThrottles = ["throttled-requests", "throttled-tokens", "throttled-daily", "throttled-unknown"]
            .reduce(0) { $0 + errorsSeen[$1, default: 0] }
        overloaded = errorsSeen["model-overloaded", default: 0]
        unavailable = errorsSeen["service-unavailable", default: 0] + errorsSeen["too-many-connections", default: 0]
        // Nearest rank over wall milliseconds (exact below 2048 ms, at most 1/1024 above the sample beyond), in
        // simulated seconds.
        let secondsPerMillisecond = 1 / 1000 / timeScale
        latencyP50 = Double(latencies.valueAtPercentile(50)) * secondsPerMillisecond
        latencyP95 = Double(latencies.valueAtPercentile(95)) * secondsPerMillisecond
        latencyP99 = Double(latencies.valueAtPercentile(99)) * secondsPerMillisecond
    }
}

/// The referee's (the simulator's) view of one model during a mode.
struct RefereeSummary: Codable, Sendable {
    var received = 0
    var admitted = 0
    var quotaThrottles = 0
    var throttledRequests = 0
    var throttledTokens = 0
    var overloaded = 0
    var serviceUnavailable = 0
    var tokensCharged = 0
    var peakWindowRequests = 0
    var peakWindowTokens = 0
    var quotaRPM: Int?
    var quotaTPM: Int?
    /// Quota use over every full 60 s window of the demand period (from when every app is sending): the
    /// binding dimension's mean and minimum
    /// (admitted requests for an RPM quota, charged tokens placed at admission for a TPM quota); nil when no
    /// window fits.
    var utilizationMean: Double?
    var utilizationMinimum: Double?

    init() {}

    /// Builds the summary from `/stats` seconds `from..<to` (simulated seconds of the simulator's clock);
    /// utilization counts the windows from `fullDemandFrom` on, when every app is sending.
    init(model: SimulatorModelStats, from: Int, to: Int, quotaWindow: Int, fullDemandFrom: Int) {
        let seconds = model.seconds.filter { $0.second >= from && $0.second < to + quotaWindow * 3 }
        for second in seconds {
            let c = second.counters
            received += c.received
            admitted += c.admitted
            throttledRequests += c.throttledRequests
            throttledTokens += c.throttledTokens
            quotaThrottles += c.throttledRequests + c.throttledTokens + c.throttledDaily
            overloaded += c.overloaded
            serviceUnavailable += c.serviceUnavailable + c.tooManyConnections
            tokensCharged += c.tokensCharged
        }
        peakWindowRequests = model.peakWindowRequests
        peakWindowTokens = model.peakWindowTokens
        quotaRPM = model.limits.requestsPerMinute
        quotaTPM = model.limits.tokensPerMinute

        // Bedrock keeps a request's charge at its admission instant, but /stats counts charges in the second
        // of completion (up to tens of seconds later for long outputs): spread the run's charges over the
        // admission seconds in proportion to the tokens held there.
        let held = seconds.reduce(0) { $0 + $1.counters.tokensHeld }
        let chargedPerHeld = held > 0 ? Double(tokensCharged) / Double(held) : 0
        var admittedBySecond: [Int: Int] = [:]
        var chargedBySecond: [Int: Double] = [:]
        for second in seconds {
            admittedBySecond[second.second] = second.counters.admitted
            chargedBySecond[second.second] = Double(second.counters.tokensHeld) * chargedPerHeld
        }
        var uses: [Double] = []
        var start = fullDemandFrom
        while start + quotaWindow <= to {
            let range = start..<(start + quotaWindow)
            var use = 0.0
            if let rpm = quotaRPM { use = max(use, Double(range.reduce(0) { $0 + admittedBySecond[$1, default: 0] }) / Double(rpm)) }
            if let tpm = quotaTPM { use = max(use, range.reduce(0) { $0 + chargedBySecond[$1, default: 0] } / Double(tpm)) }
            uses.append(use)
            start += 1
        }
        if !uses.isEmpty {
            utilizationMean = uses.reduce(0, +) / Double(uses.count)
            utilizationMinimum = uses.min()
        }
    }
}

/// One simulated second of one model, relative to the mode's start.
struct TimelineSecond: Codable, Sendable {
    var second: Int
    var admitted: Int
    /// Tokens held at admission in this second, and charged at completion in this second.
    var tokensHeld: Int
    var tokensCharged: Int
    var quotaThrottles: Int
    var overloaded: Int
    var unavailable: Int
}

/// One `--redis-fault` as applied to the fleet's own redis-server, and what callers and the referee saw around
/// it. Times are wall seconds since the mode's start; an admission is the moment a request's first Bedrock
/// attempt was sent (after the ledger admitted it).
struct FaultReport: Codable, Sendable {
    /// As given, e.g. `pause:5+2`.
    var fault: String
    var startedAtSeconds: Double
    var endedAtSeconds: Double
    /// The longest stretch without an admission that overlaps the fault (from the last admission before it to
    /// the first one after it).
    var admissionGapSeconds: Double
    /// Typed errors returned to requests in flight at some time from the fault's start to 1 s after its end.
    var callerErrors: [String: Int]
    /// Quota 429s the referee counted (all models) from the fault's start to one quota window after its end;
    /// nil without a referee.
    var quotaThrottles: Int?

    /// Wall seconds after a fault's end whose answers still count as the fault's.
    static let aftermathSeconds = 1.0

    init(
        _ applied: AppliedFault, requests: [RequestRecord], durationSeconds: Double, timeScale: Double,
        quotaWindowSeconds: Double, timeline: [TimelineSecond]?
    ) {
        fault = applied.fault.description
        startedAtSeconds = applied.startedAt
        endedAtSeconds = applied.endedAt
        let admissions = Self.admissions(requests, durationSeconds: durationSeconds)
        admissionGapSeconds = zip(admissions, admissions.dropFirst())
            .filter { $0.0 <= applied.endedAt && $0.1 >= applied.startedAt }
            .map { $0.1 - $0.0 }.max() ?? 0
        callerErrors = [:]
        for request in requests {
            guard let error = request.error else { continue }
            let arrival = Double(request.arrivalMilliseconds) / 1000
            let answered = arrival + Double(request.latencyMilliseconds) / 1000
            if arrival <= applied.endedAt + Self.aftermathSeconds, answered >= applied.startedAt {
                callerErrors[error, default: 0] += 1
            }
        }
        quotaThrottles = timeline.map { seconds in
            let from = applied.startedAt / timeScale, to = applied.endedAt / timeScale + quotaWindowSeconds
            return seconds.filter { Double($0.second) + 1 > from && Double($0.second) <= to }.reduce(0) { $0 + $1.quotaThrottles }
        }
    }

    /// Admission times in wall seconds, sorted, between the mode's start and the end of its demand.
    static func admissions(_ requests: [RequestRecord], durationSeconds: Double) -> [Double] {
        [0] + requests.compactMap { $0.admittedMilliseconds.map { Double($0) / 1000 } }.sorted() + [durationSeconds]
    }

    static func medianAdmissionGap(_ requests: [RequestRecord], durationSeconds: Double) -> Double {
        let admissions = admissions(requests, durationSeconds: durationSeconds)
        let gaps = zip(admissions, admissions.dropFirst()).map { $0.1 - $0.0 }.sorted()
        return gaps.isEmpty ? 0 : gaps[gaps.count / 2]
    }
}
