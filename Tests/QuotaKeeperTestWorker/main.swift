import BedrockErrors
import Foundation
import Logging
import QuotaKeeper
import Synchronization

// A process of the multi-process ledger and breaker tests (spawned by QuotaKeeperTests, never run by hand).
//
//   QuotaKeeperTestWorker <redis-url> <key-prefix> <model> <region> <mode> <tasks> <start-ms> <run-ms> [tokens...]
//
// Waits until wall-clock <start-ms>, then runs <tasks> concurrent tasks for <run-ms>:
//   reserve  each task reserves again and again (token sizes drawn from [tokens...], default 1); prints
//            {"admitted": n, "tokens": t, "denied": d, "times": [Redis admission time ms, ...],
//             "held": [tokens held by the admission at the same index of times, ...],
//             "epochs": [the ledger epoch of the admission at the same index, ...],
//             "maxLatencyMs": the slowest reserve call, "errors": {"<LedgerError code>/<RedisError code>": n}}
//            With QK_RECORD_STORE_ERRORS=1 a failed reserve (Redis down, paused, full, read-only) is counted in
//            "errors" and the task goes on after 20 ms; otherwise it fails the worker.
//   probe    each task reserves once; prints {"admitted": n, "probes": p}
//   fail     each task reserves and releases with a breaker failure, once; then every task reserves once more
//            after <run-ms>; prints {"reported": n, "sawOpen": m}
//   wait     each task acquires (QuotaLedger.acquire, waiting in the budget's line) once, or again and again
//            until <run-ms> with QK_WAIT_REPEAT=1; QK_WAIT_APPS (comma-separated; task i uses app i % count),
//            QK_WAIT_PRIORITY, QK_WAIT_MAXWAIT_MS, QK_WAIT_DELAY_MS (start
//            later); prints {"admitted": n, "left": m, "times": [...], "tickets": [[tag (-1: none), admitted ms, sequence,
//            class, app index, waited ms, ms from the admission's reply to its booked start (0: not booked)], ...]}
//   abandon  each task starts to acquire (taking a ticket), then the process exits after 300 ms without
//            coming back: waiters that died
//   retry    each task makes one CallCoordinator call whose Bedrock answers 503 every time, with up to 10
//            attempts and a fleet retry budget of ratio 0 and minimum [tokens...][0] retries per window;
//            prints {"attempts": n}
// QK_COMMAND_TIMEOUT_MS / QK_CONNECT_TIMEOUT_MS set the Redis command and connect timeouts (default 5000 / 2000).
// QK_BUDGET_LIMITS=rpm,tpm,window-ms: the budget's configuration (as the tests' testConfiguration builds it), which
// the worker seeds again when Redis has lost it (a restart without persistence).
// Exits 0 on success, 1 with a message on stderr otherwise.

struct WorkerFailure: Error, CustomStringConvertible {
    let description: String
}

let arguments = CommandLine.arguments
guard arguments.count >= 9, let tasks = Int(arguments[6]), let startMilliseconds = Int64(arguments[7]),
      let runMilliseconds = Int64(arguments[8])
else {
    FileHandle.standardError.write(Data("usage: QuotaKeeperTestWorker url prefix model region mode tasks start-ms run-ms [tokens...]\n".utf8))
    exit(64)
}
let mode = arguments[5]
let sizes = arguments.dropFirst(9).compactMap(Int.init)
let budget = BudgetID(model: arguments[3], region: arguments[4])

func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

extension Duration {
    /// The duration in (fractional) milliseconds, as the reports print it.
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

func sleep(untilWallMilliseconds target: Int64) async throws {
    let remaining = target - wallMilliseconds()
    if remaining > 0 { try await Task.sleep(for: .milliseconds(remaining)) }
}

/// Bedrock attempts one call made (its closure runs once per attempt).
final class Attempts: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

func isBreakerDenial(_ error: any Error) -> Bool {
    (error as? LedgerError)?.denial?.reason == .breakerOpen
}

/// The `errors` key of a failed reserve: the ledger's code and, for `storeUnavailable`, the Redis layer's.
func errorKey(_ error: LedgerError) -> String {
    "\(error.code)/" + ((error.underlying as? RedisError).map { "\($0.code)" } ?? "-")
}

do {
    let environment = ProcessInfo.processInfo.environment
    var configuration = try RedisConfiguration(url: arguments[1])
    configuration.timeouts.command = .milliseconds(Int64(environment["QK_COMMAND_TIMEOUT_MS"] ?? "") ?? 5000)
    configuration.timeouts.connect = .milliseconds(Int64(environment["QK_CONNECT_TIMEOUT_MS"] ?? "") ?? 2000)
    configuration.pool.connections = 2
    let redis = RedisClient(configuration: configuration)
    let recordStoreErrors = environment["QK_RECORD_STORE_ERRORS"] == "1"
    let waitApps = (environment["QK_WAIT_APPS"] ?? "worker").split(separator: ",").map(String.init)
    let waitPriority = Priority(rawValue: environment["QK_WAIT_PRIORITY"] ?? "interactive") ?? .interactive
    let maxWait = Duration.milliseconds(Int64(environment["QK_WAIT_MAXWAIT_MS"] ?? "") ?? 10_000)
    // The test seeds the budget (and its waiting line's settings) before the workers start; this is what the
    // worker re-seeds after Redis lost the budget.
    var lineSettings = BudgetConfiguration(id: budget, limits: .init(requestsPerWindow: 1))
    if let limits = environment["QK_BUDGET_LIMITS"]?.split(separator: ",").compactMap({ Int($0) }), limits.count == 3 {
        // The test's testConfiguration(rpm:tpm:window:).
        lineSettings.limits = .init(requestsPerWindow: limits[0], tokensPerWindow: limits[1])
        (lineSettings.window, lineSettings.bucketCount) = (.milliseconds(limits[2]), limits[2] / 100)
        (lineSettings.dayWindow, lineSettings.dayBucketCount, lineSettings.historyRetention) = (.seconds(60), 60, .seconds(120))
    }
    let ledger = try QuotaLedger(
        redis: redis, keyPrefix: arguments[2], budgets: [lineSettings],
        instanceID: "worker-\(ProcessInfo.processInfo.processIdentifier)")
    if recordStoreErrors {
        _ = try? await ledger.status(of: budget)   // the store may already be failing (a read-only replica)
    } else {
        _ = try await ledger.status(of: budget)   // connected and the budget exists before the start signal
    }
    try await sleep(untilWallMilliseconds: startMilliseconds)
    let end = startMilliseconds + runMilliseconds
    if let delay = Int64(environment["QK_WAIT_DELAY_MS"] ?? "") { try await Task.sleep(for: .milliseconds(delay)) }
    typealias TaskResult = (counts: [String: Int], times: [Int64], held: [Int64], tickets: [[Double]], epochs: [Int64], errors: [String: Int], maxLatency: Int64)
    let total = try await withThrowingTaskGroup(of: TaskResult.self) { group in
        for task in 0..<tasks {
            group.addTask {
                var counts: [String: Int] = [:], errors: [String: Int] = [:]
                var times: [Int64] = [], held: [Int64] = [], tickets: [[Double]] = [], epochs: [Int64] = []
                var maxLatency: Int64 = 0
                switch mode {
                case "wait":
                    let app = waitApps[task % waitApps.count]
                    repeat {
                        let clock = ContinuousClock(), started = clock.now
                        do {
                            let reservation = try await ledger.acquire(
                                budget, app: app, priority: waitPriority, tokens: 1, maxWait: maxWait)
                            counts["admitted", default: 0] += 1
                            times.append(reservation.admittedAtMilliseconds)
                            held.append(1)
                            let waited = clock.now - started
                            tickets.append([
                                reservation.waitingTicket?.tag ?? -1, Double(reservation.admittedAtMilliseconds),
                                Double(reservation.sequence), waitPriority == .batch ? 1 : 0,
                                Double(task % waitApps.count),
                                waited.milliseconds, reservation.startsIn.milliseconds,
                            ])
                            _ = consume reservation   // held until it leaves the window
                        } catch let error as LedgerError where error.code == .waitBeyondDeadline {
                            counts["left", default: 0] += 1
                        }
                    } while environment["QK_WAIT_REPEAT"] == "1" && wallMilliseconds() < end
                case "abandon":
                    Task {
                        let reservation = try await ledger.acquire(budget, app: "abandoned", tokens: 1, maxWait: maxWait)
                        _ = consume reservation
                    }
                    try await Task.sleep(for: .milliseconds(300))
                    guard task == 0 else { try await Task.sleep(for: .seconds(60)); break }
                    FileHandle.standardOutput.write(Data("{\"times\": []}\n".utf8))
                    exit(0)   // the process dies holding its tasks' tickets
                case "reserve":
                    var draw = task
                    while wallMilliseconds() < end {
                        draw += 1
                        let tokens = sizes.isEmpty ? 1 : sizes[draw % sizes.count]
                        let clock = ContinuousClock(), started = clock.now
                        do {
                            defer { maxLatency = max(maxLatency, (clock.now - started).millisecondsRoundedUp) }
                            let reservation = try await ledger.reserve(budget, app: "worker", tokens: tokens)
                            counts["admitted", default: 0] += 1
                            counts["tokens", default: 0] += reservation.heldTokens
                            times.append(reservation.admittedAtMilliseconds)
                            held.append(Int64(reservation.heldTokens))
                            epochs.append(reservation.epoch)
                            _ = consume reservation   // held until it leaves the window
                        } catch let error as LedgerError where error.code == .budgetExhausted {
                            counts["denied", default: 0] += 1
                        } catch let error as LedgerError where recordStoreErrors && error.code != .invalidArgument {
                            errors[errorKey(error), default: 0] += 1
                            try await Task.sleep(for: .milliseconds(20))
                        }
                    }
                case "probe":
                    do {
                        let reservation = try await ledger.reserve(budget, app: "worker", tokens: 1)
                        counts["admitted", default: 0] += 1
                        if reservation.isProbe { counts["probes", default: 0] += 1 }
                        _ = consume reservation   // a prober that never reports
                    } catch where isBreakerDenial(error) {
                        counts["denied", default: 0] += 1
                    }
                case "fail":
                    do {
                        let reservation = try await ledger.reserve(budget, app: "worker", tokens: 1)
                        try await reservation.release(outcome: .failure, latency: .milliseconds(5))
                        counts["reported", default: 0] += 1
                    } catch where isBreakerDenial(error) {
                        counts["deniedEarly", default: 0] += 1
                    }
                    try await sleep(untilWallMilliseconds: end)
                    do {
                        let reservation = try await ledger.reserve(budget, app: "worker", tokens: 1)
                        try await reservation.release()
                    } catch where isBreakerDenial(error) {
                        counts["sawOpen", default: 0] += 1
                    }
                case "retry":
                    var configuration = CallPathConfiguration()
                    configuration.retry.maximumAttemptsPerTarget = 10
                    configuration.retry.baseDelay = .milliseconds(2)
                    configuration.retry.maximumDelay = .milliseconds(10)
                    configuration.retryBudget.ratio = 0
                    configuration.retryBudget.minimumPerWindow = sizes.first ?? 0
                    let coordinator = CallCoordinator(ledger: ledger, configuration: configuration)
                    let attempts = Attempts()
                    _ = try? await coordinator.call(
                        route: [budget], estimate: CallEstimate(inputTokens: 1, maxOutputTokens: 1),
                        options: CallOptions(app: "worker", deadline: .seconds(20))
                    ) { _ -> CallCompletion<Int> in
                        attempts.increment()
                        throw BedrockError(kind: .serviceUnavailable, status: 503, message: "Service temporarily unavailable, please try again.")
                    }
                    counts["attempts", default: 0] += attempts.value
                default:
                    throw WorkerFailure(description: "unknown mode \(mode)")
                }
                return (counts, times, held, tickets, epochs, errors, maxLatency)
            }
        }
        var total: TaskResult = ([:], [], [], [], [], [:], 0)
        for try await result in group {
            total.counts.merge(result.counts, uniquingKeysWith: +)
            total.times += result.times
            total.held += result.held
            total.tickets += result.tickets
            total.epochs += result.epochs
            total.errors.merge(result.errors, uniquingKeysWith: +)
            total.maxLatency = max(total.maxLatency, result.maxLatency)
        }
        return total
    }
    await redis.shutdown()
    var output: [String: Any] = total.counts
    output["times"] = total.times
    output["held"] = total.held
    if mode == "wait" { output["tickets"] = total.tickets }
    if mode == "reserve" {
        output["epochs"] = total.epochs
        output["errors"] = total.errors
        output["maxLatencyMs"] = total.maxLatency
    }
    let json = try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
} catch {
    FileHandle.standardError.write(Data("QuotaKeeperTestWorker: \(error)\n".utf8))
    exit(1)
}
