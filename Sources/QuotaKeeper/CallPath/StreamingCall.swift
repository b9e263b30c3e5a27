import BedrockErrors
import Foundation
import Logging
import Synchronization

/// What the call path needs to know about one event of a streamed Bedrock answer (see
/// ``CallCoordinator/callStreaming(route:estimate:options:logger:meter:_:)``).
public struct StreamEventReading: Sendable, Hashable {
    /// Whether the event carries generated content for the caller (a text or tool-input delta, a block
    /// start). The first such event commits the call to its target: no retry or fallback after it.
    public var isContent: Bool
    /// Output tokens the event carries, estimated on the high side (nil: unknown, so a stream that breaks
    /// after it is settled at the worst case).
    public var outputTokens: Int?
    /// The usage Bedrock reported (ConverseStream's `metadata`, InvokeModel's final chunk): what is settled.
    public var usage: TokenUsage?

    /// Creates a reading.
    public init(isContent: Bool = false, outputTokens: Int? = 0, usage: TokenUsage? = nil) {
        self.isContent = isContent
        self.outputTokens = outputTokens
        self.usage = usage
    }
}

/// The events of a streamed call that the call path admitted and will settle.
///
/// Iterate it to the end (or cancel the iterating task) to finish the call: its reservation is settled
/// exactly once, before the sequence ends, from the usage Bedrock reported. A failure after the first
/// content event is thrown as ``CallPathError`` with code ``CallPathError/Code/streamInterrupted`` holding
/// the classified ``BedrockError``.
public struct CallStream<Event: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Event
    let events: AsyncThrowingStream<Event, any Error>
    /// Time from the start of the call (admission included) to its first content event; nil if the stream
    /// ended without content.
    public let timeToFirstToken: Duration?

    public func makeAsyncIterator() -> AsyncThrowingStream<Event, any Error>.Iterator {
        events.makeAsyncIterator()
    }
}

extension CallCoordinator {
    /// Runs one streamed Bedrock call (ConverseStream, InvokeModelWithResponseStream) along `route`.
    ///
    /// Admits before the request like ``call(route:estimate:options:_:)``, then opens the stream and reads
    /// it until its first content event. Failures until then (an error answer, an exception event before any
    /// content, a broken stream) are retried and fall over exactly as for a whole call. From the first
    /// content event on, the call belongs to its target: the stream is handed to the caller, and a later
    /// failure is thrown to the caller (typed, ``CallPathError/Code/streamInterrupted``), never retried.
    ///
    /// The reservation is settled exactly once, when the stream ends:
    /// - with the usage of the reading that reported it (the final `metadata` event) on success; if the
    ///   stream ended without reporting usage, at the worst case (input + maxTokens);
    /// - after a mid-stream failure or cancellation, at input + the output tokens seen so far (capped at
    ///   maxTokens; the worst case if any event's tokens were unknown). Capacity failures (503, 500,
    ///   overload, timeout) count as breaker failures, quota throttles lower the adaptive ceiling.
    /// The breaker judges the call's latency by its time to first token. Metrics:
    /// `quotakeeper_call_time_to_first_token_seconds` beside `quotakeeper_call_duration_seconds` (to the end
    /// of the stream), `quotakeeper_stream_interruptions_total`, and `quotakeeper_calls_total` when the stream
    /// ends (`failed_streamInterrupted` after a mid-stream failure).
    /// - Parameters:
    ///   - route: Targets in order of preference.
    ///   - estimate: Input and max output tokens: what Bedrock holds at the start.
    ///   - options: App, priority, deadline (for the call until its first content) and waiting policy.
    ///   - meter: Reads an event: content or not, output tokens, reported usage.
    ///   - open: Sends the streaming request to a target; throws its error answer, returns its events.
    /// - Returns: The stream (already started) and the target serving it.
    /// - Throws: ``CallPathError`` saying for every target why it was not used, or `CancellationError`.
    public func callStreaming<Event: Sendable>(
        route: [BudgetID], estimate: CallEstimate, options: CallOptions, logger: Logger? = nil,
        meter: @escaping @Sendable (Event) -> StreamEventReading,
        _ open: @escaping @Sendable (BudgetID) async throws -> AsyncThrowingStream<Event, any Error>
    ) async throws -> CallResult<CallStream<Event>> {
        let started = clock.now
        let coordinator = self
        let logger = logger ?? self.logger
        let (result, reservation) = try await admitAndCall(
            route: route, estimate: estimate, options: options, logger: logger, settlesOnSuccess: false
        ) { target in
            let relay = StreamRelay<Event>(
                target: target, estimate: estimate, callStarted: started, meter: meter, coordinator: coordinator, logger: logger)
            relay.start(try await open(target))
            try await relay.waitForFirstContent()
            return CallCompletion(value: relay, usage: TokenUsage(inputTokens: 0, outputTokens: 0))
        }
        let relay = result.value
        // admitAndCall hands over the reservation of every success when asked to.
        if let reservation { await relay.attach(reservation, isFallback: result.isFallback) }
        return CallResult(
            value: CallStream(events: relay.events, timeToFirstToken: relay.timeToFirstToken), target: result.target,
            isFallback: result.isFallback, attempts: result.attempts, waited: result.waited, skipped: result.skipped,
            chargedTokens: nil)
    }
}

/// A reservation admitted for a streamed call, held until the stream ends; settled once.
final class HeldReservation: Sendable {
    private let ticket: Mutex<AdmissionTicket?>

    init(_ ticket: consuming AdmissionTicket) {
        self.ticket = Mutex(Optional(ticket))
    }

    /// Settles the reservation the first time; nil on any later call.
    func settle(usage: TokenUsage, outcome: CallOutcome, latency: Duration) async throws -> (chargedTokens: Int, breaker: BreakerState?, wasProbe: Bool)? {
        let taken = ticket.withLock { $0.take() }
        switch consume taken {
        case .none:
            return nil
        case .some(let ticket):
            let wasProbe = ticket.isProbe
            let settled = try await ticket.settle(usage: usage, outcome: outcome, latency: latency)
            return (settled.chargedTokens, settled.breaker, wasProbe)
        }
    }
}

/// Relays a target's stream to the caller, meters it, and settles its reservation when it ends.
final class StreamRelay<Event: Sendable>: Sendable {
    /// How the source stream ended.
    enum End: Sendable {
        case finished
        case failed(any Error)
        case cancelled
    }

    private struct State: ~Copyable {
        var firstContentWaiter: CheckedContinuation<Void, any Error>?
        var timeToFirstToken: Duration?
        var sawContent = false
        var preContentEnd: End?
        var outputTokens = 0
        var outputTokensUnknown = false
        var usage: TokenUsage?
        var end: End?
        var reservation: HeldReservation?
        var pump: Task<Void, Never>?
        var cancelled = false
        var isFallback = false
    }

    let events: AsyncThrowingStream<Event, any Error>
    private let output: AsyncThrowingStream<Event, any Error>.Continuation
    private let state = Mutex(State())
    private let target: BudgetID
    private let estimate: CallEstimate
    private let callStarted: ContinuousClock.Instant
    private let meter: @Sendable (Event) -> StreamEventReading
    private let coordinator: CallCoordinator
    private let logger: Logger

    init(target: BudgetID, estimate: CallEstimate, callStarted: ContinuousClock.Instant,
         meter: @escaping @Sendable (Event) -> StreamEventReading, coordinator: CallCoordinator, logger: Logger) {
        (events, output) = AsyncThrowingStream<Event, any Error>.makeStream()
        self.target = target
        self.estimate = estimate
        self.callStarted = callStarted
        self.meter = meter
        self.coordinator = coordinator
        self.logger = logger
        output.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.cancel() }
        }
    }

    var timeToFirstToken: Duration? { state.withLock { $0.timeToFirstToken } }

    /// Starts reading `source`.
    func start(_ source: AsyncThrowingStream<Event, any Error>) {
        let pump = Task { [self] in
            do {
                for try await event in source {
                    relay(event)
                }
                await finish(Task.isCancelled ? .cancelled : .finished)
            } catch {
                await finish(error is CancellationError || Task.isCancelled ? .cancelled : .failed(error))
            }
        }
        let cancelledAlready = state.withLock { state in
            state.pump = pump
            return state.cancelled
        }
        if cancelledAlready { pump.cancel() }
    }

    /// Stops reading the source (which closes its connection).
    func cancel() {
        let pump = state.withLock { state in
            state.cancelled = true
            return state.pump
        }
        pump?.cancel()
    }

    /// Returns at the first content event (or the end of a stream without content); throws the error
    /// that ended the stream before any content. Cancelling the waiting task stops the stream.
    func waitForFirstContent() async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
                let ready: Result<Void, any Error>? = state.withLock { state in
                    if state.sawContent { return .success(()) }
                    switch state.preContentEnd {
                    case .finished?: return .success(())
                    case .failed(let error)?: return .failure(error)
                    case .cancelled?: return .failure(CancellationError())
                    case nil:
                        state.firstContentWaiter = waiter
                        return nil
                    }
                }
                if let ready { waiter.resume(with: ready) }
            }
        } onCancel: {
            cancel()
        }
    }

    /// Hands over the call's reservation; settles it now if the stream has already ended.
    /// - Parameter isFallback: Whether the target serving the call is not the route's first.
    func attach(_ reservation: HeldReservation, isFallback: Bool) async {
        let end: End? = state.withLock { state in
            state.reservation = reservation
            state.isFallback = isFallback
            return state.end
        }
        if let end { await complete(end, reservation: reservation) }
    }

    private func relay(_ event: Event) {
        let reading = meter(event)
        let firstContent: CheckedContinuation<Void, any Error>?? = state.withLock { state in
            if let tokens = reading.outputTokens {
                state.outputTokens += tokens
            } else {
                state.outputTokensUnknown = true
            }
            if let usage = reading.usage { state.usage = usage }
            guard reading.isContent, !state.sawContent else { return nil }
            state.sawContent = true
            state.timeToFirstToken = coordinator.clock.now - callStarted
            defer { state.firstContentWaiter = nil }
            return .some(state.firstContentWaiter)
        }
        output.yield(event)
        if let firstContent {
            coordinator.metrics.timeToFirstToken(on: target, timeToFirstToken ?? .zero)
            firstContent?.resume()
        }
    }

    private enum FinishStep {
        case preContent(CheckedContinuation<Void, any Error>?)
        case afterContent(CheckedContinuation<Void, any Error>?, HeldReservation?)
    }

    private func finish(_ end: End) async {
        let next: FinishStep = state.withLock { state in
            let waiter = state.firstContentWaiter
            state.firstContentWaiter = nil
            var isPreContent = !state.sawContent
            if case .finished = end { isPreContent = false }  // a stream without content is still a success
            if isPreContent {
                state.preContentEnd = end
                return .preContent(waiter)
            }
            state.preContentEnd = state.preContentEnd ?? .finished
            state.end = end
            return .afterContent(waiter, state.reservation)
        }
        switch next {
        case .preContent(let waiter):
            // Not the caller's yet: the call path retries, falls over or fails, and finishes the reservation.
            if case .failed(let error) = end {
                waiter?.resume(throwing: error)
            } else {
                waiter?.resume(throwing: CancellationError())
            }
            output.finish(throwing: CancellationError())
        case .afterContent(let waiter, let reservation):
            waiter?.resume()
            // Without the reservation yet, attach() settles when it arrives.
            if let reservation { await complete(end, reservation: reservation) }
        }
    }

    /// Settles the reservation for how the stream ended, then ends the caller's sequence.
    private func complete(_ end: End, reservation: HeldReservation) async {
        let (seen, unknown, reported, ttft, isFallback) = state.withLock {
            ($0.outputTokens, $0.outputTokensUnknown, $0.usage, $0.timeToFirstToken, $0.isFallback)
        }
        let latency = ttft ?? (coordinator.clock.now - callStarted)
        let seenSoFar = TokenUsage(
            inputTokens: estimate.inputTokens, outputTokens: unknown ? estimate.maxOutputTokens : min(seen, estimate.maxOutputTokens),
            cacheReadInputTokens: estimate.cacheReadTokens, cacheWriteInputTokens: estimate.cacheWriteTokens)
        let coordinator = self.coordinator
        let target = self.target
        var logger = self.logger
        logger[metadataKey: "quotakeeper.budget"] = "\(target)"

        let usage: TokenUsage
        let outcome: CallOutcome
        var failure: CallPathError?
        var kind: BedrockErrorKind?
        switch end {
        case .finished:
            usage = reported ?? estimate.worstCaseUsage
            outcome = .success
        case .cancelled:
            usage = seenSoFar
            outcome = .notCounted
        case .failed(let error):
            let classified = coordinator.configuration.classifier.classify(error)
            kind = classified.kind
            usage = seenSoFar
            outcome = classified.kind.countsAsBreakerFailure ? .failure : .notCounted
            coordinator.metrics.bedrockError(on: target, kind: classified.kind)
            coordinator.metrics.streamInterrupted(on: target, kind: classified.kind)
            failure = CallPathError(
                code: .streamInterrupted,
                message: "the stream from \(target) failed after its first content (\(classified.kind.rawValue)): not retried",
                failures: [TargetFailure(target: target, reason: .failed(classified, attempts: 1))], underlying: classified)
        }
        // Settled in a task of its own: a cancelled consumer must not cancel the ledger's round trip.
        let settlement = await Task { try await reservation.settle(usage: usage, outcome: outcome, latency: latency) }.result
        switch settlement {
        case .success(let settled?):
            coordinator.logBreakerTransition(settled.breaker, afterProbe: settled.wasProbe, logger: logger)
        case .success(nil):
            break
        case .failure(let error):
            logger.debug("could not settle a streamed call; its hold stays counted until it leaves the window", metadata: ["quotakeeper.error": "\(error)"])
        }
        if let kind, kind.isQuotaThrottle { await coordinator.ceiling.unexpectedThrottle(on: target) }
        if case .finished = end { await coordinator.ceiling.success(on: target) }
        coordinator.metrics.callDuration(on: target, coordinator.clock.now - callStarted)
        let outcomeLabel: String? = switch end {
        case .finished: isFallback ? "served_by_fallback" : "served"
        case .failed: "failed_\(CallPathError.Code.streamInterrupted)"
        case .cancelled: nil  // as for a whole call whose task was cancelled
        }
        if let outcomeLabel {
            coordinator.metrics.callFinished(budget: target.description, outcome: outcomeLabel)
        }
        if let failure {
            output.finish(throwing: failure)
        } else if case .cancelled = end {
            output.finish(throwing: CancellationError())
        } else {
            output.finish()
        }
    }
}
