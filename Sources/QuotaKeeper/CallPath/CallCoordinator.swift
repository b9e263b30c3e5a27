import BedrockErrors
import Foundation
import Logging
import TimeLimit

/// The resilient call path: one call that admits against the fleet ledger and breaker, calls Bedrock through
/// the caller's own closure, classifies the outcome, retries with full jitter, waits for budget, falls over
/// along the route, and settles what Bedrock charged.
///
/// ```swift
/// let result = try await coordinator.call(
///     route: [sonnetInRegion, sonnetGeo, haiku],
///     estimate: CallEstimate(inputTokens: 1_200, maxOutputTokens: 512),
///     options: CallOptions(app: "checkout", deadline: .seconds(20))
/// ) { target in
///     let response = try await bedrock.converse(modelID: target.model, region: target.region, request)
///     return CallCompletion(value: response, usage: TokenUsage(response.usage))
/// }
/// ```
///
/// The closure must throw errors a `BedrockErrorClassifier` can classify (`BedrockError`, or any type
/// conforming to `BedrockErrorDescribing`), turn its SDK's own retries off, and honour task cancellation.
/// Nothing of the request or response is logged: the call path never sees them.
public struct CallCoordinator: Sendable {
    public let ledger: QuotaLedger
    public let configuration: CallPathConfiguration
    let retryBudget: RetryBudget
    let ceiling: AdaptiveCeilingController
    let localShare: LocalShareLimiter
    let journal: ReplayJournal
    let logger: Logger
    let policy: CallPathPolicy
    let metrics = CallPathMetrics()
    /// What the driver reads the time from and sleeps on; the adaptive ceiling's recovery and the fail-open
    /// local share are timed on it too.
    let clock: any CallPathClock
    /// The random source of the retries' full jitter: uniform in 0...1.
    let randomFraction: @Sendable () -> Double

    /// Creates the call path over a ledger.
    /// - Parameter logger: for what is not one call's (ceiling changes, fail-open replays), and for calls
    ///   made without a logger of their own.
    public init(ledger: QuotaLedger, configuration: CallPathConfiguration = .init(), logger: Logger = Logger(label: "quotakeeper.call", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.init(
            ledger: ledger, configuration: configuration, logger: logger, clock: ContinuousClock(),
            randomFraction: { Double.random(in: 0...1) })
    }

    /// Creates the call path on `clock` with its jitter drawn from `randomFraction` (tests make both exact).
    init(
        ledger: QuotaLedger, configuration: CallPathConfiguration, logger: Logger, clock: any CallPathClock,
        randomFraction: @escaping @Sendable () -> Double
    ) {
        self.ledger = ledger
        self.configuration = configuration
        self.retryBudget = RetryBudget(ledger: ledger, configuration: configuration.retryBudget)
        self.ceiling = AdaptiveCeilingController(
            ledger: ledger, configuration: configuration.adaptiveCeiling, logger: logger, metrics: metrics, clock: clock)
        self.localShare = LocalShareLimiter(clock: clock)
        self.journal = ReplayJournal(instanceID: ledger.instanceID)
        self.logger = logger
        self.policy = CallPathPolicy(retry: configuration.retry, storeFailurePolicy: configuration.storeFailurePolicy)
        self.clock = clock
        self.randomFraction = randomFraction
    }

    /// Replays usage admitted on the local share while Redis was away (policy `failOpen`) into the ledger now.
    /// The call path does this by itself after its next successful admission; call it before shutting down.
    ///
    /// Redis cost: one `ledger_replay` per budget and app with unreplayed usage.
    public func replayFailOpenUsage() async {
        await journal.flush(into: ledger, logger: logger)
    }

    /// Whether usage admitted while Redis was away is still waiting to be replayed.
    public var hasUnreplayedUsage: Bool { !journal.isEmpty }

    /// Runs one Bedrock call along `route` and returns its value with the target that served it.
    ///
    /// Redis cost on the happy path: two `EVALSHA` (reserve, settle). Each wait for budget adds a reserve; a
    /// retry adds a `retry_budget` call and a reserve/release pair.
    /// - Parameters:
    ///   - route: targets in order of preference (e.g. in-Region model, geo profile, a smaller model).
    ///   - estimate: input and max output tokens: what Bedrock holds at the start.
    ///   - options: app, priority, deadline and waiting policy.
    ///   - logger: the caller's logger for this call (its metadata is kept); nil: the coordinator's.
    ///   - operation: the Bedrock call for a target; returns the value and the usage Bedrock reported.
    /// - Throws: `CallPathError` saying for every target why it was not used, or `CancellationError`.
    public func call<Value: Sendable>(
        route: [BudgetID], estimate: CallEstimate, options: CallOptions, logger: Logger? = nil,
        _ operation: @escaping @Sendable (BudgetID) async throws -> CallCompletion<Value>
    ) async throws -> CallResult<Value> {
        try await admitAndCall(route: route, estimate: estimate, options: options, logger: logger ?? self.logger, settlesOnSuccess: true, operation).result
    }

    /// The driver shared by ``call(route:estimate:options:logger:_:)`` and the streaming form: it performs
    /// what ``CallPathPolicy`` decides (admission, retries, waits, fallback) around `operation`. With
    /// `settlesOnSuccess` false, a successful call's reservation is not settled but handed back (the stream
    /// settles it when it ends).
    func admitAndCall<Value: Sendable>(
        route: [BudgetID], estimate: CallEstimate, options: CallOptions, logger callLogger: Logger, settlesOnSuccess: Bool,
        _ operation: @escaping @Sendable (BudgetID) async throws -> CallCompletion<Value>
    ) async throws -> (result: CallResult<Value>, reservation: HeldReservation?) {
        try validate(route: route, estimate: estimate, options: options)
        var logger = callLogger
        logger[metadataKey: "quotakeeper.request_id"] = "\(options.requestID)"
        logger[metadataKey: "quotakeeper.app"] = "\(options.app)"
        let started = clock.now
        let deadline = started + options.deadline
        var failures: [TargetFailure] = []
        var attempts = 0
        var waited = Duration.zero
        var position = CallPathPolicy.Position(index: 0, count: route.count, attempts: 0)
        logger[metadataKey: "quotakeeper.budget"] = "\(route[0])"

        /// Performs a decision that ends the attempts on the current target; returns normally on a fall-over.
        func moveOn(_ decision: CallPathPolicy.Decision, underlying: BedrockError? = nil) throws(CallPathError) {
            let target = route[position.index]
            switch decision {
            case .fallOver(let next, let reason):
                failures.append(TargetFailure(target: target, reason: reason))
                metrics.fellOver(from: target, to: route[next])
                logger.debug("falling over to the next target", metadata: ["quotakeeper.next_budget": "\(route[next])"])
                position = CallPathPolicy.Position(index: next, count: route.count, attempts: 0)
                logger[metadataKey: "quotakeeper.budget"] = "\(route[next])"
            case .fail(let code, let reason):
                if let reason { failures.append(TargetFailure(target: target, reason: reason)) }
                let message = switch code {
                case .nonRetryable: "Bedrock refused the request (\(underlying?.kind.rawValue ?? "unknown")): not retried"
                default: "no target of the route served the call"
                }
                throw finalError(code, message, failures, logger, underlying: code == .nonRetryable ? underlying : nil)
            case .deadlinePassed:
                failures += route[position.index...].map { TargetFailure(target: $0, reason: .deadlineExceeded) }
                throw finalError(.deadlineExceeded, "the deadline of \(options.deadline) passed", failures, logger)
            case .admit, .admitOnLocalShare, .askFleetForRetry, .retry:
                preconditionFailure("\(decision) does not end a target's attempts")
            }
        }

        while true {
            let target = route[position.index]
            let admit = policy.beforeAttempt(at: position, now: clock.now, deadline: deadline, maximumWaitPerTarget: options.maximumWaitPerTarget)
            guard case .admit(let maximumWait) = admit else {
                try moveOn(admit)
                continue
            }

            // 1. Admission: breaker and every limit in one round trip, waiting for budget within maximumWait.
            let ticket: AdmissionTicket
            let admissionStarted = clock.now
            do {
                let reservation = try await ledger.acquire(
                    target, app: options.app, priority: options.priority, tokens: estimate.heldTokens, maxWait: maximumWait)
                ticket = AdmissionTicket(reservation, ledger: ledger, localShare: localShare, journal: journal)
                if !journal.isEmpty {
                    let (journal, ledger, logger) = (journal, ledger, logger)
                    Task { await journal.flush(into: ledger, logger: logger) }
                }
            } catch let error as LedgerError {
                waited += clock.now - admissionStarted
                switch error.code {
                case .budgetExhausted, .waitBeyondDeadline:   // falls over at once, never waits out the deadline
                    let denial = error.denial
                    let reason: TargetFailure.Reason = denial.map {
                        $0.reason == .breakerOpen ? .breakerOpen(retryAfter: $0.retryAfter) : .budgetExhausted($0)
                    } ?? .breakerOpen(retryAfter: nil)
                    metrics.denied(on: target, limit: denial?.reason.rawValue ?? "unknown")
                    logger.debug("target skipped", metadata: ["quotakeeper.reason": "\(TargetFailure(target: target, reason: reason))"])
                    try moveOn(policy.after(.notAdmitted(reason), at: position, now: clock.now, deadline: deadline, randomFraction: 0))
                    continue
                case .storeUnavailable:
                    guard case .admitOnLocalShare(let instances) = policy.after(.storeUnavailable, at: position, now: clock.now, deadline: deadline, randomFraction: 0) else {
                        throw finalError(.storeUnavailable, "the quota ledger is unreachable (policy failClosed): \(error.message)", failures, logger, underlying: error)
                    }
                    guard let budget = ledger.configurations[target] else {
                        try moveOn(policy.after(.notAdmitted(.storeUnavailable(error.message)), at: position, now: clock.now, deadline: deadline, randomFraction: 0))
                        continue
                    }
                    guard let hold = localShare.admit(budget, tokens: estimate.heldTokens, expectedInstances: instances) else {
                        metrics.denied(on: target, limit: "local_share")
                        try moveOn(policy.after(.notAdmitted(.localShareExhausted), at: position, now: clock.now, deadline: deadline, randomFraction: 0))
                        continue
                    }
                    ticket = AdmissionTicket(local: hold, app: options.app, ledger: ledger, localShare: localShare, journal: journal)
                    metrics.failOpenAdmission(on: target)
                    logger.info("Redis unreachable: admitted on this instance's local share", metadata: ["quotakeeper.error": "\(error.message)"])
                default:
                    throw CallPathError(code: .invalidRequest, message: error.message, failures: failures, underlying: error)
                }
            }
            let admissionWait = clock.now - admissionStarted
            waited += admissionWait
            metrics.admissionWait(on: target, admissionWait)

            // 2. The caller's Bedrock call, bounded by the deadline.
            attempts += 1
            position.attempts += 1
            if position.attempts == 1 { retryBudget.recordCall(on: target) }
            let callStarted = clock.now
            let outcome = await Self.run(within: deadline - clock.now) { try await operation(target) }
            let latency = clock.now - callStarted
            let isFallback = position.index > 0

            switch outcome {
            case .success(let completion) where !settlesOnSuccess:
                // quotakeeper_calls_total and the call duration are recorded when the stream ends.
                let result = CallResult(
                    value: completion.value, target: target, isFallback: isFallback, attempts: attempts, waited: waited,
                    skipped: failures, chargedTokens: nil)
                return (result, HeldReservation(ticket))

            case .success(let completion):
                var charged: Int?
                do {
                    // The breaker's own slow-call threshold judges the latency.
                    let wasProbe = ticket.isProbe
                    let settled = try await ticket.settle(usage: completion.usage, outcome: .success, latency: latency)
                    charged = settled.chargedTokens
                    logBreakerTransition(settled.breaker, afterProbe: wasProbe, logger: logger)
                } catch {
                    logger.debug("settlement failed; the held tokens stay counted until they leave the window", metadata: ["quotakeeper.error": "\(error)"])
                }
                metrics.callFinished(budget: target.description, outcome: isFallback ? "served_by_fallback" : "served")
                metrics.callDuration(on: target, clock.now - started)
                await ceiling.success(on: target)
                let result = CallResult(
                    value: completion.value, target: target, isFallback: isFallback, attempts: attempts, waited: waited,
                    skipped: failures, chargedTokens: charged)
                return (result, nil)

            case .failure(let error) where error is CancellationError || Task.isCancelled:
                // In flight when cancelled: Bedrock may have charged; count the worst case.
                ticket.settleDetached(usage: estimate.worstCaseUsage, outcome: .notCounted, latency: latency, logger: logger)
                throw CancellationError()

            case .failure(let error):
                let failure = error is DeadlinePassed
                    ? BedrockError(kind: .timeout, message: "the call's deadline passed while Bedrock was answering", source: .client)
                    : configuration.classifier.classify(error)
                let kind = failure.kind
                metrics.bedrockError(on: target, kind: kind)
                logger.debug("Bedrock call failed", metadata: ["quotakeeper.kind": "\(kind.rawValue)", "quotakeeper.attempt": "\(position.attempts)"])
                await finishFailed(ticket, kind: kind, estimate: estimate, latency: latency, logger: logger)
                if kind.isQuotaThrottle { await ceiling.unexpectedThrottle(on: target) }

                let jitter = randomFraction()   // one draw per failed attempt
                var decision = policy.after(.failed(failure), at: position, now: clock.now, deadline: deadline, randomFraction: jitter)
                if case .askFleetForRetry = decision {
                    let permitted = await retryBudget.permitRetry(on: target)
                    if !permitted { metrics.retryDenied(on: target) }
                    decision = policy.after(
                        .fleetRetryAnswer(permitted: permitted, after: failure), at: position, now: clock.now, deadline: deadline,
                        randomFraction: jitter)
                }
                guard case .retry(let delay) = decision else {
                    try moveOn(decision, underlying: failure)
                    continue
                }
                metrics.retried(on: target, kind: kind)
                try await clock.sleep(for: delay)
                waited += delay
            }
        }
    }

    // MARK: Pieces

    private func validate(route: [BudgetID], estimate: CallEstimate, options: CallOptions) throws(CallPathError) {
        func invalid(_ message: String) -> CallPathError { CallPathError(code: .invalidRequest, message: message) }
        guard !route.isEmpty else { throw invalid("the route has no targets") }
        for (name, value) in [
            ("inputTokens", estimate.inputTokens), ("maxOutputTokens", estimate.maxOutputTokens),
            ("cacheWriteTokens", estimate.cacheWriteTokens), ("cacheReadTokens", estimate.cacheReadTokens),
            ("heldTokens", estimate.heldTokens),
        ] where !(0...100_000_000).contains(value) {
            throw invalid("estimate \(name) must be from 0 to 10^8, not \(value)")
        }
        let ratio = configuration.retryBudget.ratio
        guard ratio.isFinite, (0...10).contains(ratio) else {
            throw invalid("retryBudget.ratio must be a number from 0 to 10, not \(ratio)")
        }
        guard options.deadline > .zero else { throw invalid("the deadline must be positive, not \(options.deadline)") }
        guard QuotaLedger.isValidName(options.app) else {
            throw invalid("app \"\(options.app)\" must be 1-64 characters of A-Z a-z 0-9 . _ -")
        }
    }

    /// Gives back or charges a failed call's reservation and reports the outcome to the breaker, as
    /// ``CallPathPolicy/finishing(_:)`` says.
    private func finishFailed(_ ticket: consuming AdmissionTicket, kind: BedrockErrorKind, estimate: CallEstimate, latency: Duration, logger: Logger) async {
        let (settlesWorstCase, outcome) = CallPathPolicy.finishing(kind)
        let wasProbe = ticket.isProbe
        do {
            let breaker = if settlesWorstCase {
                try await ticket.settle(usage: estimate.worstCaseUsage, outcome: outcome, latency: latency).breaker
            } else {
                try await ticket.release(outcome: outcome, latency: latency)
            }
            logBreakerTransition(breaker, afterProbe: wasProbe, logger: logger)
        } catch {
            logger.debug("could not finish a failed call's reservation; it stays counted", metadata: ["quotakeeper.error": "\(error)"])
        }
    }

    /// Logs the shared breaker's transitions seen in an outcome report's reply (no extra round trip): the
    /// ledger admits calls only while the breaker is closed (or a probe while half-open), so a reply saying
    /// `open` means it opened during this call; `closed` after a probe means the probes closed it. Every
    /// instance with a call finishing then logs it once.
    func logBreakerTransition(_ state: BreakerState?, afterProbe: Bool, logger: Logger) {
        switch state {
        case .open?:
            logger.info("breaker opened", metadata: ["quotakeeper.breaker": "open", "quotakeeper.probe": "\(afterProbe)"])
        case .closed? where afterProbe:
            logger.info("breaker closed after probes", metadata: ["quotakeeper.breaker": "closed"])
        default:
            break
        }
    }

    private func finalError(
        _ code: CallPathError.Code, _ message: String, _ failures: [TargetFailure], _ logger: Logger,
        underlying: (any Error & Sendable)? = nil
    ) -> CallPathError {
        var message = message
        let pool = failures.contains {
            if case .failed(let error, _) = $0.reason { return error.kind == .tooManyConnections }
            return false
        }
        if pool {
            message += " (\"Too many connections\" usually means the client's own HTTP connection pool is too small for its concurrency: raise it and share one client)"
        }
        metrics.callFinished(budget: failures.first?.target.description ?? "none", outcome: "failed_\(code)")
        logger.debug("call failed", metadata: ["quotakeeper.error_code": "\(code)", "quotakeeper.targets": "\(failures.map(\.description))"])
        return CallPathError(code: code, message: message, failures: failures, underlying: underlying)
    }

    /// Runs `body` within what is left of the call's deadline (``withTimeLimit(_:_:)``): `DeadlinePassed` when
    /// it passes.
    static func run<T: Sendable>(
        within remaining: Duration, _ body: @escaping @Sendable () async throws -> T
    ) async -> Result<T, any Error> {
        do {
            guard let value = try await withTimeLimit(remaining, body) else { return .failure(DeadlinePassed()) }
            return .success(value)
        } catch {
            return .failure(error)
        }
    }
}

/// The call's deadline passed while the closure was running.
struct DeadlinePassed: Error {}

extension CallEstimate {
    /// What Bedrock could have charged at most: every input token and `maxTokens` of output (settlement
    /// applies the model's burndown to the output).
    var worstCaseUsage: TokenUsage {
        TokenUsage(
            inputTokens: inputTokens, outputTokens: maxOutputTokens, cacheReadInputTokens: cacheReadTokens,
            cacheWriteInputTokens: cacheWriteTokens)
    }
}
