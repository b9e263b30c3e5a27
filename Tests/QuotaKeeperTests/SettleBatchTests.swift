import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis

/// Batched settlements (`ledger_settle_many`, ``QuotaLedger/settleCoalescer``) against the real redis-server.
@Suite("Batched settlements")
struct SettleBatchTests {
    /// A budget of 60 s in 1 s buckets (the day ring of `testConfiguration` too: 60 s in 1 s buckets), with room for
    /// everything a test reserves, so that the same calls get the same decisions whenever they are sent.
    func configuration(_ label: String, inFlight: Bool = false, historyApps: Int = 50) -> BudgetConfiguration {
        var configuration = testConfiguration(uniqueBudget(label), rpm: 10_000, tpm: 10_000_000, window: .seconds(60))
        configuration.bucketCount = 60
        configuration.historyApps = historyApps
        if inFlight { configuration.inFlight = .init(limit: 1000) }
        return configuration
    }

    /// Sleeps until 20 ms after Redis's clock enters its next second (a new bucket of both rings).
    func nextSecond(_ ledger: QuotaLedger) async throws {
        let now = try await ledger.redisMilliseconds()
        try await Task.sleep(for: .milliseconds(1000 - now % 1000 + 20))
    }

    /// The settlement of `reservation` as `finish` sends it.
    func call(
        _ reservation: ReservationRecord, _ mode: LedgerWire.SettleMode, usage: TokenUsage, outcome: CallOutcome, _ ledger: QuotaLedger
    ) -> QuotaLedger.SettleCall {
        QuotaLedger.SettleCall(
            arguments: LedgerWire.SettleArguments(
                reservationID: reservation.id, mode: mode, usage: usage, burndown: ledger.burndown, model: reservation.budget.model,
                outcome: outcome, latency: .milliseconds(5), instance: ledger.instanceID),
            reservation: reservation)
    }

    /// What a reply says, comparable across budgets.
    func answer(_ reply: RedisReply, to call: QuotaLedger.SettleCall) throws -> String {
        switch try LedgerWire.SettleReply(reply, to: call.arguments) {
        case .done(let settlement): "done \(settlement)"
        case .alreadyDone(let mode, let settlement): "already \(mode) \(settlement)"
        case .unknownReservation: "unknown"
        }
    }

    /// One round's plan, applied alike to two budgets: reservations in two buckets, some settled before, then
    /// settlements and releases of random ones (repeated ids too), of unknown ids, and a few failures.
    struct Plan {
        struct Hold { var app: String; var tokens: Int; var requests: Int; var settledBefore: Bool }
        struct Settle { var hold: Int?; var mode: LedgerWire.SettleMode; var usage: TokenUsage; var outcome: CallOutcome }
        var holds: [Hold]
        var settles: [Settle]

        init(apps: Int, failures: Bool, using random: inout some RandomNumberGenerator) {
            holds = (0..<30).map { _ in
                Hold(app: "app-\(Int.random(in: 0..<apps, using: &random))", tokens: Int.random(in: 0...800, using: &random),
                     requests: Int.random(in: 1...2, using: &random), settledBefore: Int.random(in: 0..<8, using: &random) == 0)
            }
            let holdCount = holds.count
            settles = (0..<45).map { _ in
                let outcomes: [CallOutcome] = failures ? [.success, .success, .success, .notCounted, .failure] : [.success, .success, .notCounted]
                return Settle(
                    hold: Int.random(in: 0..<12, using: &random) == 0 ? nil : Int.random(in: 0..<holdCount, using: &random),
                    mode: Int.random(in: 0..<4, using: &random) == 0 ? .release : .settle,
                    usage: TokenUsage(inputTokens: Int.random(in: 0...700, using: &random), outputTokens: Int.random(in: 0...60, using: &random),
                                      cacheWriteInputTokens: Int.random(in: 0...20, using: &random)),
                    outcome: outcomes.randomElement(using: &random)!)
            }
        }
    }

    /// Reserves the plan's holds (the first half a bucket before the second) in both budgets, interleaved in time.
    func reserve(_ plan: Plan, in ledgers: [(QuotaLedger, BudgetID)]) async throws -> [[ReservationRecord]] {
        var reservations: [[ReservationRecord]] = ledgers.map { _ in [] }
        try await nextSecond(ledgers[0].0)
        for half in [0..<(plan.holds.count / 2), (plan.holds.count / 2)..<plan.holds.count] {
            if half.lowerBound > 0 { try await nextSecond(ledgers[0].0) }
            for (index, (ledger, budget)) in ledgers.enumerated() {
                for hold in plan.holds[half] {
                    let reservation = try await ledger.reserve(
                        budget, app: hold.app, tokens: hold.tokens, requests: hold.requests, id: "hold-\(reservations[index].count)")
                    reservations[index].append(ReservationRecord(reservation))
                    _ = consume reservation
                }
            }
        }
        return reservations
    }

    @Test("a batch plus its fallbacks leaves the same ledger, history, records and replies as the same settles one by one (random mixes)")
    func batchSettlesAsOneByOne() async throws {
        var random = SystemRandomNumberGenerator()
        let rounds: [(label: String, inFlight: Bool, historyApps: Int, failures: Bool)] = [
            ("plain", false, 50, false), ("plain", false, 50, false), ("few-rows", false, 2, false),
            ("failures", false, 50, true), ("in-flight", true, 50, false),
        ]
        for (round, setup) in rounds.enumerated() {
            let plan = Plan(apps: setup.historyApps == 2 ? 5 : 2, failures: setup.failures, using: &random)
            let batched = configuration("settle-\(setup.label)-a", inFlight: setup.inFlight, historyApps: setup.historyApps)
            let oneByOne = configuration("settle-\(setup.label)-b", inFlight: setup.inFlight, historyApps: setup.historyApps)
            try await withLedger(batched) { ledger, budgetA in
                try await withLedger(oneByOne) { _, budgetB in
                    _ = try await freshHistoryMinute(ledger)
                    let ledgers = [(ledger, budgetA), (ledger, budgetB)]
                    let reservations = try await reserve(plan, in: ledgers)
                    var calls: [[QuotaLedger.SettleCall]] = [[], []]
                    for side in 0..<2 {
                        for (index, hold) in plan.holds.enumerated() where hold.settledBefore {
                            _ = try await ledger.settleAlone(
                                call(reservations[side][index], .settle, usage: TokenUsage(inputTokens: 5, outputTokens: 1), outcome: .success, ledger),
                                of: ledgers[side].1)
                        }
                        let unknown = ReservationRecord(Reservation(
                            budget: ledgers[side].1, app: "app-0", priority: .interactive, id: "never-admitted", sequence: 0, epoch: 0,
                            requests: 1, heldTokens: 10, isProbe: false, admittedAtMilliseconds: reservations[side][0].admittedAtMilliseconds,
                            admittedAt: reservations[side][0].admittedAt, startsIn: .zero, ledger: ledger))
                        calls[side] = plan.settles.map { settle in
                            call(settle.hold.map { reservations[side][$0] } ?? unknown, settle.mode, usage: settle.usage, outcome: settle.outcome, ledger)
                        }
                    }

                    let replies = try await ledger.settleMany(calls[0], of: budgetA)
                    var batchedAnswers: [String] = []
                    for (reply, call) in zip(replies, calls[0]) {
                        let sent = if let reply { reply } else { try await ledger.settleAlone(call, of: budgetA) }
                        batchedAnswers.append(try answer(sent, to: call))
                    }
                    var oneByOneAnswers: [String] = []
                    for call in calls[1] { oneByOneAnswers.append(try answer(try await ledger.settleAlone(call, of: budgetB), to: call)) }

                    let settledInBatch = replies.compactMap { $0 }.count
                    if setup.inFlight {
                        #expect(settledInBatch == 0, "round \(round): the in-flight leases are not in the batch's KEYS")
                    } else if plan.settles.first?.outcome == .failure {
                        // (a failure needs the breaker's keys: from the first call on, the batch sends everything back)
                        #expect(settledInBatch == 0, "round \(round): a failure first, and the batch settled \(settledInBatch) itself")
                    } else {
                        #expect(settledInBatch > 0, "round \(round): the batch settled nothing itself")
                    }
                    if let fallback = replies.firstIndex(where: { $0 == nil }) {
                        #expect(replies[fallback...].allSatisfy { $0 == nil }, "round \(round): fallbacks are a suffix")
                    }
                    #expect(batchedAnswers == oneByOneAnswers, "round \(round)")
                    let statuses = [try await ledger.status(of: budgetA), try await ledger.status(of: budgetB)]
                    for keyPath in [\BudgetStatus.window, \BudgetStatus.day] {
                        let (a, b) = (statuses[0][keyPath: keyPath], statuses[1][keyPath: keyPath])
                        #expect(a.requests == b.requests && a.tokens == b.tokens, "round \(round)")
                        #expect(a.buckets == b.buckets, "round \(round): \(a.buckets) vs \(b.buckets)")
                    }
                    #expect(statuses[0].breaker == statuses[1].breaker && statuses[0].inFlight == statuses[1].inFlight, "round \(round)")
                    #expect(try await ledger.history(of: budgetA, minutes: 2) == (try await ledger.history(of: budgetB, minutes: 2)), "round \(round)")
                    for index in plan.holds.indices {   // each record consumed alike (state, charged, given back)
                        let records = [
                            try await ledger.redis.send("GETRANGE", ledger.keys(budgetA).record(reservations[0][index].id), "0", "23"),
                            try await ledger.redis.send("GETRANGE", ledger.keys(budgetB).record(reservations[1][index].id), "0", "23"),
                        ]
                        #expect(records[0] == records[1], "round \(round): record \(index)")
                    }
                }
            }
        }
    }

    @Test("a batch sent again (its reply lost) changes nothing: each call answers already_settled in its own mode")
    func repeatedBatchChangesNothing() async throws {
        var slow = configuration("again")   // buckets of 10 s (window), 60 s (day) and 30 s (breaker outcomes)
        slow.window = .seconds(600)
        slow.dayWindow = .seconds(3600)
        slow.breaker.window = .seconds(300)
        slow.breaker.bucketCount = 10
        try await withLedger(slow) { ledger, budget in
            _ = try await freshHistoryMinute(ledger)
            var records: [ReservationRecord] = []
            for index in 0..<6 {
                let reservation = try await ledger.reserve(budget, app: "again", tokens: 100, id: "again-\(index)")
                records.append(ReservationRecord(reservation))
                _ = consume reservation
            }
            // A first settle alone counts the breaker's first outcome (a batch needs its outcome ring).
            _ = try await ledger.settleAlone(call(records[0], .settle, usage: TokenUsage(inputTokens: 80, outputTokens: 0), outcome: .success, ledger), of: budget)
            let calls = records.dropFirst().enumerated().map { index, record in
                call(record, index % 2 == 0 ? .settle : .release, usage: TokenUsage(inputTokens: 130, outputTokens: 0), outcome: .success, ledger)
            }
            let first = try await ledger.settleMany(calls, of: budget)
            #expect(first.contains { $0 != nil }, "the batch settled nothing itself: \(first)")
            for (reply, call) in zip(first, calls) where reply == nil { _ = try await ledger.settleAlone(call, of: budget) }
            let before = try await ledger.status(of: budget)
            let again = try await ledger.settleMany(calls, of: budget)
            for (reply, call) in zip(again, calls) {
                let sent = if let reply { reply } else { try await ledger.settleAlone(call, of: budget) }
                guard case .alreadyDone(let mode, let settlement) = try LedgerWire.SettleReply(sent, to: call.arguments) else {
                    Issue.record("expected already_settled, got \(sent)")
                    continue
                }
                #expect(mode == call.arguments.mode && settlement.chargedTokens == call.arguments.chargedTokens)
            }
            let after = try await ledger.status(of: budget)
            #expect(after.window.tokens == before.window.tokens && after.window.requests == before.window.requests)
            #expect(after.window.tokens == 80 + 130 * 3 && after.window.requests == 1 + 3)
            #expect(after.breaker.calls == before.breaker.calls)
            #expect(try await ledger.history(of: budget, minutes: 2).reduce(0) { $0 + $1.tokens } == 80 + 130 * 3)
        }
    }

    @Test("hundreds of concurrent settles and releases of one process: every one answered once, totals exact")
    func concurrentSettlesAreExact() async throws {
        try await withLedger(configuration("concurrent", historyApps: 3)) { ledger, budget in
            _ = try await freshHistoryMinute(ledger, seconds: 30)
            let count = 400
            let reservations = try await withThrowingTaskGroup(of: ReservationRecord.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let reservation = try await ledger.reserve(budget, app: "app-\(index % 5)", tokens: 100, id: "c-\(index)")
                        let record = ReservationRecord(reservation)
                        _ = consume reservation
                        return record
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(try await ledger.status(of: budget).window.tokens == count * 100)
            let settlements = try await withThrowingTaskGroup(of: (Int, Settlement).self) { group in
                for reservation in reservations {
                    let index = Int(reservation.id.dropFirst(2))!
                    group.addTask {   // (the path of `Reservation.settle` / `release` and of the call path's ticket)
                        if index % 4 == 0 {
                            return (index, try await ledger.finish(reservation, mode: .release, usage: TokenUsage(inputTokens: 0, outputTokens: 0), outcome: .notCounted, latency: .zero))
                        }
                        // Charges of 60 to 140 tokens: given back or added beyond the 100 held.
                        return (index, try await ledger.finish(
                            reservation, mode: .settle, usage: TokenUsage(inputTokens: 60 + index % 81, outputTokens: 0), outcome: .success, latency: .milliseconds(3)))
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(settlements.count == count)
            let settled = (0..<count).filter { $0 % 4 != 0 }
            let charged = settled.reduce(0) { $0 + 60 + $1 % 81 }
            #expect(settled.allSatisfy { settlements[$0]?.chargedTokens == 60 + $0 % 81 && settlements[$0]?.returnedTokens == 40 - $0 % 81 })
            let status = try await ledger.status(of: budget)
            #expect(status.window.tokens == charged && status.window.requests == settled.count)
            #expect(status.day.tokens == charged)
            let history = try await ledger.history(of: budget, minutes: 2)
            #expect(history.reduce(0) { $0 + $1.tokens } == charged && history.reduce(0) { $0 + $1.requests } == settled.count)
            #expect(history.allSatisfy { $0.apps.count <= 3 }, "at most historyApps rows per minute")
        }
    }
}
