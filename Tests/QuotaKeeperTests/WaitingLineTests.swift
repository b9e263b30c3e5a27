import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperTestSupport

/// The budget's waiting line (docs/ledger.md "Waiting line") against the real redis-server, from several
/// processes (QuotaKeeperTestWorker, mode `wait`).
@Suite("Waiting line", .serialized)
struct WaitingLineTests {
    /// Fills the budget's window with `count` admissions held until they leave it.
    func saturate(_ ledger: QuotaLedger, _ budget: BudgetID, _ count: Int) async throws {
        for _ in 0..<count {
            let reservation = try await ledger.reserve(budget, app: "filler", tokens: 1)
            _ = consume reservation
        }
    }

    /// A worker admission of mode `wait`: ticket tag (-1: admitted without one), Redis admission ms, sequence, class,
    /// app index, ms waited, ms from the reply to a booking's start (0: not booked).
    struct Admission {
        var tag: Double, at: Int64, sequence: Int64, isBatch: Bool, app: Int, waited: Double, startsIn: Double
        init(_ row: [Double]) {
            tag = row[0]
            at = Int64(row[1])
            sequence = Int64(row[2])
            isBatch = row[3] == 1
            app = Int(row[4])
            waited = row[5]
            startsIn = row[6]
        }
        /// Waited in the line: with a ticket, or booked for a later time.
        var waitedInLine: Bool { tag >= 0 || startsIn > 0 }
    }

    @Test("FIFO within a class: 4 processes x 16 waiters are admitted in ticket order, up to one bucket")
    func admissionsFollowTicketOrder() async throws {
        // 20 requests per second in 100 ms buckets: 64 waiters take about 3 s.
        let configuration = testConfiguration(uniqueBudget("fifo"), rpm: 20, window: .seconds(1))
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 20)
            let reports = try await runWorkers(
                processes: 4, budget: budget, mode: "wait", tasks: 16, startDelay: .milliseconds(1000),
                run: .milliseconds(100), environment: ["QK_WAIT_APPS": "fifo", "QK_WAIT_MAXWAIT_MS": "15000"])
            let admissions = reports.flatMap { $0.tickets ?? [] }.map(Admission.init).sorted { $0.sequence < $1.sequence }
            #expect(admissions.count == 64 && reports.total(\.left) == 0)
            #expect(admissions.filter(\.waitedInLine).count >= 60)   // (a few may find room as the window frees)
            // Bookings are made in arrival order, each for the head bucket's time or later: a later booking is never
            // for an earlier bucket (100 ms) than an earlier one.
            let booked = admissions.filter { $0.startsIn > 0 }
            for (earlier, later) in zip(booked, booked.dropFirst()) {
                #expect(later.at >= earlier.at - 100, "booking \(later.sequence) at \(later.at) ms, before \(earlier.sequence) at \(earlier.at) ms")
            }
            // A ticket admitted after one with a later tag was already due when that one was admitted (the
            // ledger admits a ticket only if the room covers every ticket ahead); it comes back at its due
            // time: within one bucket (100 ms) plus its wake-up delay.
            var worstLateness: Int64 = 0
            for (index, later) in admissions.enumerated() where later.tag >= 0 {
                for earlier in admissions[..<index] where earlier.tag > later.tag {
                    worstLateness = max(worstLateness, later.at - earlier.at)
                }
            }
            #expect(worstLateness <= 100 + 250, "an overtaken ticket was admitted \(worstLateness) ms after the ticket that overtook it")
            let busiest = busiestWindow(times: admissions.map(\.at), held: admissions.map { _ in 1 }, windowMilliseconds: 1000)
            #expect(busiest.requests <= 20)   // exactness unchanged (the 20 fillers came before all of these)
        }
    }

    /// One waiting attempt (`ledger_reserve` with a ticket), reduced to what the line told the caller.
    enum LineAnswer {
        case admitted(startsIn: Duration)
        case queued(tag: Double, due: Duration)
        case refused(Denial)
    }
    func waitingAttempt(_ ledger: QuotaLedger, _ budget: BudgetID, id: String, maxWait: Duration) async throws -> LineAnswer {
        let request = QuotaLedger.ReserveRequest(app: "steady", priority: .interactive, tokens: 1, requests: 1, lease: nil, id: id)
        switch try await ledger.attempt(budget, request, waiting: .init(maxWait: maxWait), mayShareACall: false) {
        case .admitted(let reservation):
            let startsIn = reservation.startsIn
            _ = consume reservation   // held until it leaves the window
            return .admitted(startsIn: startsIn)
        case .queued(let ticket, let due):
            return .queued(tag: ticket.tag, due: due.retryAfter ?? .zero)
        case .denied(let denial):
            return .refused(denial)
        }
    }

    @Test("the line's pace is at most the weight of the apps in line: bursts of admissions do not send away a caller whose turn is within its wait")
    func paceSurvivesBursts() async throws {
        // 20 requests per second: a saturated window admits its 20 together, once per counted span (1.4 s with
        // the default hop margin). Tickets come back in their order, so a burst's first admission comes a span
        // after the one before it for one call's worth of virtual time (measured alone: a pace of 20, not 1;
        // one app alone in line has a pace of 1).
        let configuration = testConfiguration(uniqueBudget("pace"), rpm: 20, window: .seconds(1))
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 20)
            let clock = ContinuousClock()
            var pending: [(id: String, tag: Double, due: ContinuousClock.Instant)] = []
            var admitted = 0
            func answer(_ id: String, maxWait: Duration) async throws -> Bool {
                let sent = clock.now
                switch try await waitingAttempt(ledger, budget, id: id, maxWait: maxWait) {
                case .admitted:
                    admitted += 1
                    return true
                case .queued(let tag, let due):
                    pending.append((id, tag, sent + due))
                    return false
                case .refused(let denial):
                    Issue.record("\(id) was sent away: \(denial)")
                    return false
                }
            }
            for index in 0..<60 { _ = try await answer("steady-\(index)", maxWait: .seconds(30)) }
            #expect(pending.count >= 40, "60 callers for 20 places a window: most take tickets")
            var probes = 0, lastAdmission = clock.now
            let deadline = clock.now + .seconds(20)
            while !pending.isEmpty, clock.now < deadline {
                try await Task.sleep(until: pending.map(\.due).min()!)
                let due = pending.filter { $0.due <= clock.now }.sorted { $0.tag < $1.tag }
                pending.removeAll { ticket in due.contains { $0.id == ticket.id } }
                for ticket in due where try await answer(ticket.id, maxWait: .seconds(30)) {
                    defer { lastAdmission = clock.now }
                    // The first admission of the second and third bursts (a span after the one before): a
                    // newcomer behind at most two windows' worth of tickets, who can wait three, takes a ticket.
                    guard clock.now - lastAdmission > .seconds(1), probes < 2, admitted > 20 else { continue }
                    probes += 1
                    _ = try await answer("newcomer-\(probes)", maxWait: .milliseconds(3 * 1400 + 1000))
                }
            }
            #expect(probes == 2)
            #expect(admitted == 60 + probes)
        }
    }

    @Test("equal share: 3 apps with equal demand of twice the quota get shares within 5 % over 5 windows")
    func appsGetEqualShares() async throws {
        // 60 requests per 500 ms window, no hop margin: the ledger counts 6 buckets of 100 ms. Whatever is
        // admitted together leaves together, so a saturated budget admits in bursts, one per 600 ms span.
        var configuration = testConfiguration(uniqueBudget("share"), rpm: 60, window: .milliseconds(500))
        configuration.hopMargin = .zero
        try await withLedger(configuration) { ledger, budget in
            // One process per app, each with 40 waiters that come back at once after each admission: each
            // app's demand is twice the quota (3 x 40 tickets for 60 places per span).
            let reports = try await withThrowingTaskGroup(of: [WorkerReport].self) { group in
                for app in ["alpha", "beta", "gamma"] {
                    group.addTask {
                        try await runWorkers(
                            processes: 1, budget: budget, mode: "wait", tasks: 40, startDelay: .milliseconds(1000),
                            run: .milliseconds(4500),
                            environment: ["QK_WAIT_APPS": app, "QK_WAIT_MAXWAIT_MS": "10000", "QK_WAIT_REPEAT": "1"])
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let admissions = reports.enumerated()
                .flatMap { app, report in (report.tickets ?? []).map { (app: app, admission: Admission($0)) } }
                .sorted { $0.admission.sequence < $1.admission.sequence }
            // The first 60 admissions are first come, first served (no line yet); the next 300 are 5 windows'
            // worth of the quota, admitted through the line.
            try #require(admissions.count >= 360, "only \(admissions.count) admissions")
            let measured = admissions[60..<360]
            let counts = (0..<3).map { app in measured.filter { $0.app == app }.count }
            let most = Double(counts.max() ?? 0), least = Double(counts.min() ?? 0)
            #expect(least > 0 && most / least <= 1.05, "shares \(counts), left \(reports.map { $0.left ?? 0 })")
            // The quota is used: those 300 took 5 spans of 600 ms, each lengthened by the waiters' wake-up
            // delay (what is admitted late leaves late; up to 300 ms on this shared 2-core machine).
            let span = measured.last!.admission.at - measured.first!.admission.at
            #expect(span <= 5 * (600 + 300), "5 windows' worth took \(span) ms")
            let times = admissions.map(\.admission.at)
            #expect(busiestWindow(times: times, held: times.map { _ in 1 }, windowMilliseconds: 500).requests <= 60)
        }
    }

    @Test("batch waits behind interactive but is admitted within its promotion bound")
    func batchIsPromoted() async throws {
        var configuration = testConfiguration(uniqueBudget("batch"), rpm: 20, window: .seconds(1))
        configuration.batchCeiling = 0.8
        let promotion = 1000
        configuration.waitingLine.batchPromotion = .milliseconds(promotion)   // the budget's, in Redis
        try await withLedger(configuration) { ledger, budget in
            // Interactive: 20 waiters that come back at once after each admission for 5 s (demand far above
            // the quota). Batch: 2 waiters arriving 0.5 s later, promoted after 1 s.
            let reports = try await withThrowingTaskGroup(of: [WorkerReport].self) { group in
                group.addTask {
                    try await runWorkers(
                        processes: 1, budget: budget, mode: "wait", tasks: 20, startDelay: .milliseconds(1000),
                        run: .milliseconds(5000),
                        environment: ["QK_WAIT_APPS": "users", "QK_WAIT_MAXWAIT_MS": "5000", "QK_WAIT_REPEAT": "1"])
                }
                group.addTask {
                    try await runWorkers(
                        processes: 1, budget: budget, mode: "wait", tasks: 2, startDelay: .milliseconds(1000),
                        run: .milliseconds(100),
                        environment: [
                            "QK_WAIT_APPS": "nightly", "QK_WAIT_PRIORITY": "batch", "QK_WAIT_MAXWAIT_MS": "8000",
                            "QK_WAIT_DELAY_MS": "1500",
                        ])
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let admissions = reports.flatMap { $0.tickets ?? [] }.map(Admission.init)
            let batch = admissions.filter(\.isBatch)
            #expect(batch.count == 2 && reports.total(\.left) == 0, "batch \(batch.count), left \(reports.map { $0.left ?? 0 })")
            // Documented bound: promotion + the line ahead at arrival (at most one window here: the 20
            // interactive tickets) + one window for the promoted ticket's own room, + wake-up slack.
            for admission in batch {
                #expect(admission.waited >= Double(promotion) / 2, "batch went ahead of interactive: \(admission.waited) ms")
                #expect(admission.waited <= Double(promotion) + 2000 + 500, "batch waited \(admission.waited) ms")
            }
            let times = admissions.map(\.at)
            #expect(busiestWindow(times: times, held: times.map { _ in 1 }, windowMilliseconds: 1000).requests <= 20)
        }
    }

    @Test("the tickets of a waiter that died stop blocking the line within their expiry")
    func deadWaitersExpire() async throws {
        var configuration = testConfiguration(uniqueBudget("dead"), rpm: 5, window: .seconds(1))
        configuration.waitingLine.ticketGrace = .milliseconds(300)
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 5)
            // A process takes 5 tickets (a whole window's worth) and dies.
            _ = try await runWorkers(
                processes: 1, budget: budget, mode: "abandon", tasks: 5, startDelay: .milliseconds(200),
                run: .milliseconds(100))
            var now = try await redisMilliseconds(ledger)
            #expect(try await ledger.waitingLine(of: budget, now: now).interactive.waiters == 5)
            // A live waiter of the same app, behind them, is admitted once their tickets expired (due ~1 s
            // after the fillers + 300 ms grace; without expiry they would block it to the end of its 6 s wait).
            let clock = ContinuousClock(), started = clock.now
            let reservation = try await ledger.acquire(budget, app: "abandoned", tokens: 1, maxWait: .seconds(6))
            let waited = clock.now - started
            #expect(waited < .seconds(3), "the live waiter waited \(waited)")
            now = try await redisMilliseconds(ledger)
            #expect(try await ledger.waitingLine(of: budget, now: now).interactive.waiters == 0)
            _ = consume reservation
        }
    }

    @Test("a waiter whose turn comes after its deadline leaves at once with waitBeyondDeadline")
    func unreachableDeadlineLeavesAtOnce() async throws {
        let configuration = testConfiguration(uniqueBudget("deadline"), rpm: 4, window: .seconds(2))
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 4)
            let clock = ContinuousClock(), started = clock.now
            let error = await #expect(throws: LedgerError.self) {
                _ = try await ledger.acquire(budget, app: "hasty", tokens: 1, maxWait: .milliseconds(300))
            }
            #expect(error?.code == .waitBeyondDeadline)
            #expect(error?.denial?.retryAfter ?? .zero > .milliseconds(300))
            #expect(clock.now - started < .milliseconds(250))   // one round trip, no waiting out the deadline
            let now = try await redisMilliseconds(ledger)
            #expect(try await ledger.waitingLine(of: budget, now: now).interactive.waiters == 0)
        }
    }

    @Test("callers that do not wait are refused while a ticket or a booking is ahead, and pay one round trip")
    func nonWaitersYieldToTheLine() async throws {
        let configuration = testConfiguration(uniqueBudget("yield"), rpm: 2, window: .seconds(1))
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 2)
            let waiter = Task {
                let reservation = try await ledger.acquire(budget, app: "patient", tokens: 1, maxWait: .seconds(5))
                let waited = reservation.waitingTicket != nil || reservation.startsIn > .zero   // a ticket or a booking
                _ = consume reservation
                return waited
            }
            try await Task.sleep(for: .milliseconds(200))
            let now = try await redisMilliseconds(ledger)
            #expect(try await ledger.waitingLine(of: budget, now: now).interactive.waiters == 1)
            let refused = try await denial { try await ledger.reserve(budget, app: "hasty", tokens: 1) }
            #expect(refused.reason == .requestsPerWindow || refused.reason == .waiters)
            let waited = try await waiter.value
            #expect(waited)
        }
    }

    @Test("a waiter cancelled while it sleeps gives its ticket back at once, not at its due time + grace")
    func cancelledWaiterLeaves() async throws {
        let configuration = testConfiguration(uniqueBudget("cancel"), rpm: 2, window: .seconds(1))
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 2)
            let clock = ContinuousClock(), saturated = clock.now
            let waiter = Task { try await ledger.acquire(budget, app: "impatient", tokens: 1, maxWait: .seconds(5)) }
            #expect(try await eventually { try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters == 1 })
            waiter.cancel()
            await #expect(throws: CancellationError.self) { _ = try await waiter.value }
            #expect(try await eventually(within: .milliseconds(500)) {
                try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters == 0
            })
            // The line's marker left with the last ticket: once the window has room, a caller that does not wait
            // is admitted (the ticket would have blocked it until about 1 s + 1 s grace after it was taken).
            try await Task.sleep(until: saturated + .milliseconds(1_400))
            let reservation = try await ledger.reserve(budget, app: "hasty", tokens: 1)
            _ = consume reservation
            // Leaving twice changes nothing.
            let again = try await ledger.evaluate(
                LedgerScripts.leaveLine, budget, ["no-such-ticket"], keys: ledger.keys(budget).leaveLine)
            #expect(again.array?.first?.string == "not_waiting")
        }
    }

    @Test("a booking is counted at its booked time, also after a change of the window's geometry folds the rings")
    func bookingSurvivesAFold() async throws {
        var configuration = testConfiguration(uniqueBudget("fold"), rpm: 1, window: .seconds(1))
        configuration.hopMargin = .zero
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 1)
            let waiter = Task {
                let reservation = try await ledger.acquire(budget, app: "patient", tokens: 1, maxWait: .seconds(3))
                let startsIn = reservation.startsIn
                _ = consume reservation   // held until it leaves the window
                return startsIn
            }
            #expect(try await eventually { try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters == 1 })
            configuration.bucketCount = 20   // a geometry change: what the rings count moves into one bucket
            try await ledger.updateBudget(configuration)
            #expect(try await waiter.value > .milliseconds(500), "booked for when the filler leaves the window")
            // 300 ms into the booking's window, its request still fills the limit: folded into a bucket at its
            // booked time, not at the time of the change (which would let it leave 1 s after the change).
            try await Task.sleep(for: .milliseconds(300))
            let refused = try await denial { try await ledger.reserve(budget, app: "hasty", tokens: 1) }
            #expect(refused.reason == .requestsPerWindow, "\(refused)")
        }
    }

    @Test("bookings count toward the line's capacity: a full line books no more, and its callers are served as it frees")
    func bookingsFillTheCapacity() async throws {
        var configuration = testConfiguration(uniqueBudget("booked-cap"), rpm: 20, window: .seconds(1))
        configuration.waitingLine.capacity = 3
        try await withLedger(configuration) { ledger, budget in
            try await saturate(ledger, budget, 20)
            // 8 callers of one app, within its booking lead: the window has room for all of them a span later, but
            // the line holds 3 (bookings and tickets); the others wait without a place and are served all the same.
            let clock = ContinuousClock(), started = clock.now
            let callers = (0..<8).map { _ in
                Task {
                    let reservation = try await ledger.acquire(budget, app: "eager", tokens: 1, maxWait: .seconds(6))
                    let at = reservation.admittedAtMilliseconds
                    _ = consume reservation
                    return at
                }
            }
            var most = 0
            while clock.now - started < .milliseconds(1_000) {
                most = max(most, try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters)
                try await Task.sleep(for: .milliseconds(20))
            }
            var times: [Int64] = []
            for caller in callers { times.append(try await caller.value) }
            #expect(most == 3, "at most 3 in line, and the line was full")
            #expect(times.count == 8)
            #expect(busiestWindow(times: times, held: times.map { _ in 1 }, windowMilliseconds: 1000).requests <= 20)
        }
    }

    @Test("the line's capacity and weights are the budget's in Redis, whatever a caller's own configuration says")
    func settingsFromRedis() async throws {
        var configuration = testConfiguration(uniqueBudget("settings"), rpm: 2, window: .seconds(2))
        configuration.waitingLine.capacity = 2
        configuration.waitingLine.appWeights = ["gold": 3]
        try await withLedger(configuration) { ledger, budget in
            let status = try await ledger.status(of: budget)
            #expect(status.settings["lcap"] == 2 && status.settings["lprom"] == 30_000 && status.settings["lgrace"] == 1_000)
            #expect(status.lineWeights == ["gold": 3])
            try await saturate(ledger, budget, 2)
            // Another instance that would allow 1000 tickets: the line still holds 2.
            var generous = configuration
            generous.waitingLine.capacity = 1000
            let other = try QuotaLedger(redis: ledger.redis, keyPrefix: testKeyPrefix, budgets: [generous], instanceID: "other")
            let waiters = (0..<3).map { _ in Task { try await other.acquire(budget, app: "many", tokens: 1, maxWait: .seconds(6)) } }
            #expect(try await eventually { try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters == 2 })
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await ledger.waitingLine(of: budget, now: redisMilliseconds(ledger)).interactive.waiters == 2)
            for waiter in waiters { waiter.cancel() }
            // Settings are checked by the script: a weight out of range names the setting.
            let refused = try await ledger.evaluate(
                LedgerScripts.configure, budget, ["set", "w:gold", "1000"], keys: ledger.keys(budget).configure)
            #expect(refused.array?.map(\.string) == ["invalid", "w:gold", "must be a number from 0.01 to 100"])
        }
    }
}
