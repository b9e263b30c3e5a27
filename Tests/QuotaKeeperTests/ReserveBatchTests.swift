import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis

/// Batched admissions (`ledger_reserve_many`, ``ReserveCoalescer``) against the real redis-server.
@Suite("Batched admissions")
struct ReserveBatchTests {
    /// A budget whose window (600 s in 10 s buckets) frees nothing while a test runs, so that the same calls get
    /// the same decisions whenever they are sent.
    func longWindow(_ label: String, rpm: Int, tpm: Int? = nil) -> BudgetConfiguration {
        var configuration = testConfiguration(uniqueBudget(label), rpm: rpm, tpm: tpm, window: .seconds(600))
        configuration.bucketCount = 60
        return configuration
    }

    func call(_ id: String, app: String = "batch-test", priority: Priority = .interactive, requests: Int = 1, tokens: Int = 10) -> LedgerWire.ReserveArguments {
        LedgerWire.ReserveArguments(reservationID: id, app: app, priority: priority, requests: requests, tokens: tokens, lease: nil)
    }

    /// The decision a reply stands for: the sequence number's absence, or the denial's reason.
    func decision(_ reply: RedisReply, _ budget: BudgetID) throws -> String {
        switch try LedgerWire.ReserveReply(reply, budget: budget) {
        case .admitted(_, _, _, _, let repeated, _): repeated ? "repeated" : "admitted"
        case .denied(let denial): "denied \(denial.reason.rawValue)"
        case .queued: "queued"
        }
    }

    @Test("a batch decides as the same calls sent one by one would, in order, and hands back the rest (random calls)")
    func batchDecidesAsOneByOne() async throws {
        var random = SystemRandomNumberGenerator()
        for round in 0..<5 {
            let calls = (0..<40).map { index in
                call("r\(round)-\(index)", priority: Bool.random(using: &random) ? .interactive : .batch,
                     requests: Int.random(in: 1...3, using: &random), tokens: Int.random(in: 0...400, using: &random))
            }
            var batched: [String] = [], oneByOne: [String] = []
            var admittedInBatch = 0
            var usage: [BudgetStatus] = []
            for path in ["batch", "one by one"] {
                try await withLedger(longWindow("batch-\(path == "batch" ? "a" : "b")", rpm: 40, tpm: 4_000)) { ledger, budget in
                    _ = try await ledger.reserveAlone(call("warm-up", tokens: 0), of: budget)   // the rings at this bucket
                    if path == "batch" {
                        let replies = try await ledger.reserveMany(calls, of: budget)
                        admittedInBatch = replies.compactMap { $0 }.count
                        for (reply, call) in zip(replies, calls) {
                            let answer = if let reply { reply } else { try await ledger.reserveAlone(call, of: budget) }
                            batched.append(try decision(answer, budget))
                        }
                    } else {
                        for call in calls { oneByOne.append(try decision(try await ledger.reserveAlone(call, of: budget), budget)) }
                    }
                    usage.append(try await ledger.status(of: budget))
                }
            }
            #expect(batched == oneByOne, "round \(round)")
            #expect(admittedInBatch > 0, "round \(round): the batch admitted nothing itself")
            #expect(usage[0].window.requests == usage[1].window.requests && usage[0].window.tokens == usage[1].window.tokens)
            #expect((usage[0].window.requests ?? 0) <= 40 && usage[0].window.tokens <= 4_000)
        }
    }

    @Test("a reservation id repeated in a batch, or sent before, answers its first admission and holds nothing more")
    func repeatedIDsHoldNothingTwice() async throws {
        try await withLedger(longWindow("repeat", rpm: 10)) { ledger, budget in
            _ = try await ledger.reserveAlone(call("before"), of: budget)
            let replies = try await ledger.reserveMany([call("x"), call("y"), call("x"), call("before")], of: budget)
            #expect(try replies.map { try decision(try #require($0), budget) } == ["admitted", "admitted", "repeated", "repeated"])
            #expect(try await ledger.status(of: budget).window.requests == 3)
        }
    }

    @Test("concurrent reservations of one process share batches and never admit more than the limit")
    func concurrentReservationsAreExact() async throws {
        try await withLedger(longWindow("concurrent", rpm: 100)) { ledger, budget in
            let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<300 {
                    group.addTask {
                        do {
                            let reservation = try await ledger.reserve(budget, app: "concurrent", tokens: 10)
                            _ = consume reservation
                            return true
                        } catch let error as LedgerError where error.code == .budgetExhausted {
                            return false
                        }
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(admitted == 100)
            #expect(try await ledger.status(of: budget).window.requests == 100)
        }
    }
}
