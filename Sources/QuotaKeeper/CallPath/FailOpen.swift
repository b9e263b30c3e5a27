import Foundation
import Logging
import Synchronization

/// In-process admission while Redis is unreachable (policy `failOpen`): each instance may use
/// `limit / expectedInstances` of every limit of a budget, over the budget's own windows.
final class LocalShareLimiter: Sendable {
    /// One admission held locally.
    struct Hold: Sendable {
        let budget: BudgetID
        let id: UInt64
    }

    private struct Entry {
        let id: UInt64
        let at: ContinuousClock.Instant
        var tokens: Int
    }

    private struct State {
        var nextID: UInt64 = 1
        var entries: [BudgetID: [Entry]] = [:]
    }

    private let state = Mutex(State())
    /// Times the budgets' windows (the call path's clock).
    let clock: any CallPathClock

    init(clock: any CallPathClock) { self.clock = clock }

    /// Admits `tokens` (and one request) against this instance's share, or returns nil.
    func admit(_ budget: BudgetConfiguration, tokens: Int, expectedInstances: Int) -> Hold? {
        let now = clock.now
        let instances = Double(max(1, expectedInstances))
        return state.withLock { state -> Hold? in
            var entries = state.entries[budget.id, default: []]
            entries.removeAll { now - $0.at >= max(budget.window, budget.dayWindow) }
            let inWindow = entries.filter { now - $0.at < budget.window }
            let share = { (limit: Int?) -> Int? in limit.map { Int((Double($0) * budget.effectiveCeiling / instances).rounded(.down)) } }
            if let requests = share(budget.limits.requestsPerWindow), inWindow.count + 1 > requests { return nil }
            if let window = share(budget.limits.tokensPerWindow), inWindow.reduce(0, { $0 + $1.tokens }) + tokens > window { return nil }
            if let day = share(budget.limits.tokensPerDay), entries.reduce(0, { $0 + $1.tokens }) + tokens > day { return nil }
            let id = state.nextID
            state.nextID += 1
            entries.append(Entry(id: id, at: now, tokens: tokens))
            state.entries[budget.id] = entries
            return Hold(budget: budget.id, id: id)
        }
    }

    /// Replaces a hold's tokens with what was charged (nil: the call never reached Bedrock, drop it).
    func finish(_ hold: Hold, chargedTokens: Int?) {
        state.withLock { state in
            guard var entries = state.entries[hold.budget], let index = entries.firstIndex(where: { $0.id == hold.id }) else { return }
            if let chargedTokens {
                entries[index].tokens = chargedTokens
            } else {
                entries.remove(at: index)
            }
            state.entries[hold.budget] = entries
        }
    }
}

/// Usage admitted locally while Redis was away, replayed into the ledger when it answers again, so the
/// fleet's accounting loses nothing; each entry keeps its id across retries, so nothing is counted twice.
final class ReplayJournal: Sendable {
    private struct Usage {
        var requests = 0
        var tokens = 0
        var inputTokens = 0
        var outputTokens = 0
    }

    private struct State {
        /// Usage still being added to, per budget and app.
        var open: [BudgetID: [String: Usage]] = [:]
        /// Entries with a fixed id, waiting to be replayed.
        var sealed: [UsageReplay] = []
        var isFlushing = false
    }

    private let state = Mutex(State())
    private let instanceID: String

    init(instanceID: String) { self.instanceID = instanceID }

    var isEmpty: Bool { state.withLock { $0.open.isEmpty && $0.sealed.isEmpty } }

    /// Records one call's charge and the input and output it was charged for.
    func record(budget: BudgetID, app: String, tokens: Int, usage: TokenUsage) {
        state.withLock { state in
            var current = state.open[budget]?[app] ?? Usage()
            current.requests += 1
            current.tokens += tokens
            current.inputTokens += usage.inputTokens + usage.cacheWriteInputTokens
            current.outputTokens += usage.outputTokens
            state.open[budget, default: [:]][app] = current
        }
    }

    /// Replays everything recorded so far (one flush at a time); entries that fail stay for the next flush.
    ///
    /// Redis cost: one `ledger_replay` per budget and app.
    func flush(into ledger: QuotaLedger, logger: Logger) async {
        let batch: [UsageReplay]? = state.withLock { state in
            guard !state.isFlushing else { return nil }
            let stamp = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
            for (budget, apps) in state.open {
                for (app, usage) in apps {
                    let id = "\(instanceID.prefix(40))-\(stamp)-\(state.sealed.count)"
                    state.sealed.append(UsageReplay(
                        id: id, budget: budget, app: app, requests: usage.requests, tokens: usage.tokens,
                        inputTokens: usage.inputTokens, outputTokens: usage.outputTokens))
                }
            }
            state.open = [:]
            guard !state.sealed.isEmpty else { return nil }
            state.isFlushing = true
            return state.sealed
        }
        guard let batch else { return }
        var replayed: Set<String> = []
        for entry in batch {
            do {
                let charged = try await ledger.replay(entry)
                replayed.insert(entry.id)
                logger.info("fail-open usage replayed", metadata: [
                    "quotakeeper.budget": "\(entry.budget)", "quotakeeper.app": "\(entry.app)",
                    "quotakeeper.requests": "\(entry.requests)", "quotakeeper.tokens": "\(entry.tokens)",
                    "quotakeeper.duplicate": "\(!charged)",
                ])
            } catch {
                logger.debug("fail-open replay postponed", metadata: ["quotakeeper.budget": "\(entry.budget)", "quotakeeper.error": "\(error)"])
                break
            }
        }
        state.withLock { state in
            state.sealed.removeAll { replayed.contains($0.id) }
            state.isFlushing = false
        }
    }
}

/// What admitted one attempt: a ledger reservation, or (policy `failOpen`, Redis away) a hold on this
/// instance's local share. Consumed by exactly one `settle` or `release`.
struct AdmissionTicket: ~Copyable, Sendable {
    enum Source: Sendable {
        case ledger(ReservationRecord)
        case local(LocalShareLimiter.Hold, app: String)
    }

    let source: Source
    let ledger: QuotaLedger
    let localShare: LocalShareLimiter
    let journal: ReplayJournal

    init(_ reservation: consuming Reservation, ledger: QuotaLedger, localShare: LocalShareLimiter, journal: ReplayJournal) {
        source = .ledger(ReservationRecord(reservation))
        _ = consume reservation
        self.ledger = ledger
        self.localShare = localShare
        self.journal = journal
    }

    init(local hold: LocalShareLimiter.Hold, app: String, ledger: QuotaLedger, localShare: LocalShareLimiter, journal: ReplayJournal) {
        source = .local(hold, app: app)
        self.ledger = ledger
        self.localShare = localShare
        self.journal = journal
    }

    var isLocal: Bool {
        if case .local = source { return true }
        return false
    }

    /// Whether the ledger admitted this attempt as a half-open breaker's probe.
    var isProbe: Bool {
        if case .ledger(let record) = source { return record.isProbe }
        return false
    }

    /// Charges what Bedrock charged (a local hold records it for replay); returns the tokens charged and the
    /// shared breaker's state after the outcome report (nil for a local hold).
    ///
    /// Redis cost: one `ledger_settle` for a ledger reservation, none for a local hold.
    consuming func settle(usage: TokenUsage, outcome: CallOutcome, latency: Duration) async throws -> (chargedTokens: Int, breaker: BreakerState?) {
        try await Self.settle(source, usage: usage, outcome: outcome, latency: latency, ledger: ledger, localShare: localShare, journal: journal)
    }

    /// Gives everything back: the call never reached Bedrock, or Bedrock did not charge it. Returns the
    /// shared breaker's state after the outcome report (nil for a local hold).
    ///
    /// Redis cost: one `ledger_settle` (release mode) for a ledger reservation, none for a local hold.
    consuming func release(outcome: CallOutcome, latency: Duration) async throws -> BreakerState? {
        switch source {
        case .ledger(let record):
            return try await ledger.finish(record, mode: .release, usage: TokenUsage(inputTokens: 0, outputTokens: 0), outcome: outcome, latency: latency).breakerState
        case .local(let hold, _):
            localShare.finish(hold, chargedTokens: nil)
            return nil
        }
    }

    /// Settles outside the calling task (which may be cancelled), so the charge still reaches the ledger.
    consuming func settleDetached(usage: TokenUsage, outcome: CallOutcome, latency: Duration, logger: Logger) {
        let (source, ledger, localShare, journal) = (source, ledger, localShare, journal)
        Task {
            do {
                _ = try await Self.settle(source, usage: usage, outcome: outcome, latency: latency, ledger: ledger, localShare: localShare, journal: journal)
            } catch {
                logger.debug("could not settle a cancelled call; it stays counted", metadata: ["quotakeeper.error": "\(error)"])
            }
        }
    }

    private static func settle(
        _ source: Source, usage: TokenUsage, outcome: CallOutcome, latency: Duration,
        ledger: QuotaLedger, localShare: LocalShareLimiter, journal: ReplayJournal
    ) async throws -> (chargedTokens: Int, breaker: BreakerState?) {
        switch source {
        case .ledger(let record):
            let settlement = try await ledger.finish(record, mode: .settle, usage: usage, outcome: outcome, latency: latency)
            return (settlement.chargedTokens, settlement.breakerState)
        case .local(let hold, let app):
            let charged = ledger.burndown.charge(usage, model: hold.budget.model)
            localShare.finish(hold, chargedTokens: charged)
            journal.record(budget: hold.budget, app: app, tokens: charged, usage: usage)
            return (charged, nil)
        }
    }
}
