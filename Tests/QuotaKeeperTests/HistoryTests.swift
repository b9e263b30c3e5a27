import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport

/// Waits, if needed, until Redis's clock has at least `seconds` left in its current minute, so that a test's
/// settlements all land in one history minute; returns that minute.
func freshHistoryMinute(_ ledger: QuotaLedger, seconds: Int64 = 20) async throws -> Int64 {
    var now = try await ledger.redisMilliseconds()
    if 60_000 - now % 60_000 < seconds * 1000 {
        try await Task.sleep(for: .milliseconds(60_000 - now % 60_000 + 50))
        now = try await ledger.redisMilliseconds()
    }
    return now / 60_000
}

@Suite("Per-minute history: bounded rows, exact totals, every key in KEYS")
struct HistoryTests {
    @Test("the first historyApps apps of a minute get rows, later apps share the other row, totals stay exact")
    func boundedRowsExactTotals() async throws {
        var configuration = testConfiguration(uniqueBudget("hist-rows"), window: .seconds(4))
        configuration.historyApps = 5
        try await withLedger(configuration) { ledger, budget in
            let minute = try await freshHistoryMinute(ledger)
            var expected: [String: HistoryMinute.Usage] = [:]
            for index in 0..<40 {   // apps 0-19 in order, then again: apps 0-4 arrive first
                let app = "app-\(index % 20)"
                let held = try await ledger.reserve(budget, app: app, tokens: 500)
                let settled = try await held.settle(usage: TokenUsage(inputTokens: 10 + index, outputTokens: 3, cacheWriteInputTokens: 2))
                #expect(settled.chargedTokens == 10 + index + 2 + 3)   // burndown 1 for this model
                expected[app, default: .init(requests: 0, tokens: 0)] = expected[app, default: .init(requests: 0, tokens: 0)]
                    + .init(requests: 1, tokens: settled.chargedTokens, inputTokens: 12 + index, outputTokens: 3)
            }
            let minutes = try await ledger.history(of: budget, minutes: 3)
            #expect(minutes.count == 1)
            let stored = try #require(minutes.first)
            #expect(stored.startMilliseconds == minute * 60_000)
            let firstApps = (0..<5).map { "app-\($0)" }
            #expect(stored.apps == Dictionary(uniqueKeysWithValues: firstApps.map { ($0, expected[$0]!) }))
            let later = (5..<20).map { expected["app-\($0)"]! }.reduce(HistoryMinute.Usage(requests: 0, tokens: 0), +)
            #expect(stored.otherApps == later)
            let total = expected.values.reduce(HistoryMinute.Usage(requests: 0, tokens: 0), +)
            #expect(stored.requests == 40 && stored.tokens == total.tokens)
            #expect(stored.inputTokens == total.inputTokens && stored.outputTokens == total.outputTokens)

            // Stored: 5 app rows + other, expiring one retention (120 s) after the end of the minute.
            let key = ledger.historyKey(budget, minute: minute)
            #expect(try await ledger.redis.send("HLEN", key).integer == 6)
            let expiresAt = try #require(try await ledger.redis.send("PEXPIRETIME", key).integer)
            #expect(expiresAt == (minute + 1) * 60_000 + 120_000)

            let only = try await ledger.history(of: budget, minutes: 3, app: "app-1")
            #expect(only.count == 1 && only.first?.apps == ["app-1": expected["app-1"]!] && only.first?.otherApps == nil)
            #expect(only.first?.tokens == expected["app-1"]!.tokens)
            #expect(try await ledger.history(of: budget, minutes: 3, app: "app-7").isEmpty, "app-7 has no row of its own")

            // A replay beyond the first 5 apps adds to the other row, once.
            let replay = UsageReplay(id: "r-1", budget: budget, app: "late", requests: 2, tokens: 500, inputTokens: 400, outputTokens: 100)
            #expect(try await ledger.replay(replay))
            #expect(try await !ledger.replay(replay))
            let after = try #require(try await ledger.history(of: budget, minutes: 3).last)
            if after.startMilliseconds == stored.startMilliseconds {
                #expect(after.otherApps == later + .init(requests: 2, tokens: 500, inputTokens: 400, outputTokens: 100))
            } else {   // the replay came in the next minute: its first app
                #expect(after.apps == ["late": .init(requests: 2, tokens: 500, inputTokens: 400, outputTokens: 100)])
            }
        }
    }

    @Test("a history key of another budget or of a minute far from Redis's clock is refused before anything changes")
    func historyKeyChecked() async throws {
        try await withLedger(testConfiguration(uniqueBudget("hist-keys"), tpm: 10_000, window: .seconds(4))) { ledger, budget in
            let minute = try await freshHistoryMinute(ledger)
            let held = try await ledger.reserve(budget, app: "app", tokens: 1000)
            let wire = LedgerWire.SettleArguments(
                reservationID: held.id, mode: .settle, usage: TokenUsage(inputTokens: 100, outputTokens: 10), burndown: ledger.burndown,
                model: budget.model, outcome: .success, latency: .milliseconds(5), instance: "test-instance")
            let wrongKeys = [
                ledger.historyKey(budget, minute: minute + 9), ledger.historyKey(budget, minute: minute - 9),
                ledger.historyKey(BudgetID(model: "other", region: "test-1"), minute: minute), ledger.ledgerKey(budget),
            ]
            for key in wrongKeys {
                let error = try await #require(throws: LedgerError.self) {
                    try await ledger.run(LedgerScripts.settle, budget, wire.arguments, keys: wire.keys(ledger.keys(budget)) + [key])
                }
                #expect(error.code == .invalidArgument && error.message.contains("KEYS[6]"), "\(error)")
            }
            let missing = try await #require(throws: LedgerError.self) {
                try await ledger.run(LedgerScripts.settle, budget, wire.arguments, keys: wire.keys(ledger.keys(budget)))
            }
            #expect(missing.code == .invalidArgument, "\(missing)")
            #expect(try await ledger.status(of: budget).window.tokens == 1000, "nothing given back by a refused settle")
            #expect(try await ledger.history(of: budget, minutes: 20).isEmpty)
            let settled = try await held.settle(usage: TokenUsage(inputTokens: 100, outputTokens: 10))
            #expect(settled.chargedTokens == 110)
            #expect(try await ledger.history(of: budget, minutes: 2).map(\.tokens) == [110])

            // Deleting the budget removes its history too.
            let key = ledger.historyKey(budget, minute: minute)
            #expect(try await ledger.redis.send("EXISTS", key).integer == 1)
            #expect(try await ledger.deleteBudget(budget) >= 2)
            #expect(try await ledger.redis.send("EXISTS", key).integer == 0)
        }
    }

    @Test("history settings are validated: at most 7 days, 1 to 1000 apps per minute")
    func historySettingsValidated() throws {
        var configuration = testConfiguration(uniqueBudget("hist-config"), rpm: 1)
        configuration.historyRetention = .seconds(8 * 86_400)
        #expect(throws: LedgerError.self) { try configuration.validate() }
        configuration.historyRetention = .seconds(7 * 86_400)
        configuration.historyApps = 0
        #expect(throws: LedgerError.self) { try configuration.validate() }
        configuration.historyApps = 1000
        try configuration.validate()
    }
}
