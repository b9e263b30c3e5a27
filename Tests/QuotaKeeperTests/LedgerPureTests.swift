import Foundation
import Testing
@testable import QuotaKeeper

/// The ledger's per-call client work that needs no Redis: name checks, default reservation ids, the charge.
@Suite("Ledger names, ids and charges (pure)")
struct LedgerPureTests {
    @Test("names are 1-64 ASCII letters, digits, '.', '_' or '-', as the scripts' rule")
    func nameRule() {
        for valid in ["a", "app-1", "A.b_c-9", String(repeating: "x", count: 64), "6F9619FF-8B86-D011-B42D-00C04FC964FF"] {
            #expect(QuotaLedger.isValidName(valid), "\(valid)")
        }
        for invalid in ["", String(repeating: "x", count: 65), "café", "a b", "a:b", "a{b}", "Ⅻ", "٣", "a\u{0}", "ａ"] {
            #expect(!QuotaLedger.isValidName(invalid), "\(invalid)")
        }
    }

    @Test("default reservation ids are distinct random version-4 UUIDs")
    func reservationIDs() throws {
        let ids = (0..<2000).map { _ in QuotaLedger.randomReservationID() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuidString == id && QuotaLedger.isValidName(id))
            let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 4 && bytes[8] >> 6 == 2, "\(id)")
        }
    }

    @Test("a model's burndown is the longest pattern it contains, else the default rate")
    func burndownRate() {
        let table = BurndownTable(rates: ["claude": 2, "claude-sonnet-4": 5, "sonnet": 3], defaultRate: 1.5)
        #expect(table.rate(for: "us.anthropic.claude-sonnet-4-20250514-v1:0") == 5)
        #expect(table.rate(for: "anthropic.claude-3-haiku") == 2)
        #expect(table.rate(for: "sonnet") == 3)
        #expect(table.rate(for: "amazon.nova-pro-v1:0") == 1.5)
        #expect(table.rate(for: "") == 1.5 && table.rate(for: "clau") == 1.5)
        #expect(BurndownTable.bedrockDefaults.rate(for: "global.anthropic.claude-opus-4-6-v1") == 5)
        #expect(table.charge(TokenUsage(inputTokens: 10, outputTokens: 3, cacheReadInputTokens: 7, cacheWriteInputTokens: 2),
                             model: "anthropic.claude-sonnet-4-5") == 10 + 2 + 15)
    }
}
