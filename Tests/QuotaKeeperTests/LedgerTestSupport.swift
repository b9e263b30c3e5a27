import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport

/// The key prefix of every ledger test; each test also has its own budget (a unique hash tag).
let testKeyPrefix = "qk-test:"

/// A budget unique to one test, e.g. `qk-ledger-rpm-1A2B3C4D@test-1`.
func uniqueBudget(_ label: String, model: String = "qk-ledger") -> BudgetID {
    BudgetID(model: "\(model)-\(label)-\(UUID().uuidString.prefix(8))", region: "test-1")
}

/// A configuration with short windows for tests: `window` split into 100 ms buckets, a 1 min day window.
func testConfiguration(
    _ budget: BudgetID, rpm: Int? = nil, tpm: Int? = nil, tpd: Int? = nil, window: Duration = .seconds(2)
) -> BudgetConfiguration {
    var configuration = BudgetConfiguration(
        id: budget, limits: .init(requestsPerWindow: rpm, tokensPerWindow: tpm, tokensPerDay: tpd))
    configuration.window = window
    configuration.bucketCount = Int(window.millisecondsRoundedUp / 100)
    configuration.dayWindow = .seconds(60)
    configuration.dayBucketCount = 60
    configuration.historyRetention = .seconds(120)
    return configuration
}

/// Runs `body` with a ledger that knows `configuration` (seeded), then deletes every key of the budget; on the
/// test Redis unless `redisConfiguration` names another (a cluster's seed node).
func withLedger(
    _ configuration: BudgetConfiguration, instanceID: String = "test-instance",
    redisConfiguration: RedisConfiguration? = nil,
    _ body: (QuotaLedger, BudgetID) async throws -> Void
) async throws {
    let redis = RedisClient(configuration: try redisConfiguration ?? TestRedis.configuration())
    let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration], instanceID: instanceID)
    var failure: (any Error)?
    do {
        try await ledger.seedBudgets()
        try await body(ledger, configuration.id)
    } catch {
        failure = error
    }
    _ = try? await ledger.deleteBudget(configuration.id)
    try? await TestRedis.deleteKeys(matching: "\(testKeyPrefix){\(configuration.id)}", using: redis)
    await redis.shutdown()
    if let failure { throw failure }
}

/// The denial `attempt` ends with; records an issue if it was admitted instead.
func denial(
    sourceLocation: SourceLocation = #_sourceLocation, _ attempt: () async throws -> Reservation
) async throws -> Denial {
    do {
        let reservation = try await attempt()
        Issue.record("expected a denial, got reservation \(reservation.id)", sourceLocation: sourceLocation)
        _ = try await reservation.release()
        throw LedgerError(code: .unexpectedReply, message: "admitted")
    } catch let error as LedgerError where error.code == .budgetExhausted {
        return try #require(error.denial, sourceLocation: sourceLocation)
    }
}

/// Redis `TIME` in milliseconds.
func redisMilliseconds(_ ledger: QuotaLedger) async throws -> Int64 {
    let parts = try await ledger.redis.send(["TIME"]).array ?? []
    return (parts[0].integer ?? 0) * 1000 + (parts[1].integer ?? 0) / 1000
}

/// What one worker process reports: counters (`admitted`, `tokens`, `denied`, `probes`, `reported`, `sawOpen`)
/// and the Redis times of its admissions.
struct WorkerReport: Decodable {
    var admitted: Int?, tokens: Int?, denied: Int?, probes: Int?, reported: Int?, sawOpen: Int?, attempts: Int?
    var times: [Int64]
    var held: [Int64]?
    /// Mode `wait`: per admission [ticket tag (-1 = none), Redis admission ms, sequence, class (0 interactive,
    /// 1 batch), app index, ms waited].
    var tickets: [[Double]]?
    var left: Int?
    /// Mode `reserve`: the ledger epoch of each admission (same index as `times`), the slowest reserve call, and
    /// failed reserves by `<LedgerError code>/<RedisError code>` (counted only with QK_RECORD_STORE_ERRORS=1).
    var epochs: [Int64]?
    var maxLatencyMs: Int?
    var errors: [String: Int]?
}

/// The most requests and tokens any continuous window of `windowMilliseconds` holds, from admission stamps
/// (Redis ms) and the tokens each held. Stamps are whole milliseconds, so two admissions less than a window
/// apart can be up to `windowMilliseconds` apart in stamps: such pairs count as one window (counting more).
func busiestWindow(times: [Int64], held: [Int64], windowMilliseconds: Int64) -> (requests: Int, tokens: Int64) {
    let admissions = zip(times, held).sorted { $0.0 < $1.0 }
    var busiest: (requests: Int, tokens: Int64) = (0, 0)
    var first = 0, tokens: Int64 = 0
    for (last, admission) in admissions.enumerated() {
        tokens += admission.1
        while admission.0 - admissions[first].0 > windowMilliseconds {
            tokens -= admissions[first].1
            first += 1
        }
        busiest = (max(busiest.requests, last - first + 1), max(busiest.tokens, tokens))
    }
    return busiest
}

extension [WorkerReport] {
    func total(_ counter: KeyPath<WorkerReport, Int?>) -> Int { reduce(0) { $0 + ($1[keyPath: counter] ?? 0) } }
}

/// Spawns `processes` QuotaKeeperTestWorker processes (built next to the test bundle) that start together
/// `startDelay` from now, and returns each one's report. Waiting for them never blocks a thread of the
/// cooperative pool (`ChildProcess`).
func runWorkers(
    processes: Int, budget: BudgetID, mode: String, tasks: Int, startDelay: Duration = .milliseconds(1500),
    run: Duration, tokens: [Int] = [], redisURL: String = TestRedis.url, environment: [String: String] = [:]
) async throws -> [WorkerReport] {
    let worker = try BuiltProduct.url("QuotaKeeperTestWorker")
    let start = Int64(Date().timeIntervalSince1970 * 1000) + startDelay.millisecondsRoundedUp
    let arguments = [
        redisURL, testKeyPrefix, budget.model, budget.region, mode, String(tasks), String(start),
        String(run.millisecondsRoundedUp),
    ] + tokens.map(String.init)
    let results = try await withThrowingTaskGroup(of: ChildProcessResult.self) { group in
        for _ in 0..<processes {
            group.addTask {
                try await ChildProcess.run(
                    worker, arguments: arguments,
                    environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 })
            }
        }
        return try await group.reduce(into: []) { $0.append($1) }
    }
    return try results.map { result in
        guard result.status == 0 else {
            throw LedgerError(code: .unexpectedReply, message: "worker failed: \(result.errorOutput)")
        }
        return try JSONDecoder().decode(WorkerReport.self, from: result.standardOutput)
    }
}
