import Foundation
import Testing
@testable import QuotaKeeper
import QuotaKeeperRedis
import QuotaKeeperTestSupport

/// Issue 17: a budget name must not be able to rewrite the terminal of whoever lists budgets.
@Suite("Budget names")
struct BudgetNameTests {
    static let unsafeNames = [
        BudgetID(model: "evil\u{1B}[2J\u{1B}[31mFAKE", region: "us-east-1"),  // escape sequences
        BudgetID(model: "model", region: "us-east-1\r"),  // carriage return (whitespace too)
        BudgetID(model: "model\u{9B}31m", region: "us-east-1"),  // C1 control sequence introducer
        BudgetID(model: "model\u{202E}1v", region: "us-east-1"),  // right-to-left override
        BudgetID(model: "mo\u{200B}del", region: "us-east-1"),  // zero-width space
    ]

    @Test("control and format characters are refused by validateName, a ledger's configurations and ledger_configure")
    func controlAndFormatCharactersRefused() async throws {
        #expect(throws: Never.self) { try BudgetID(model: "anthropic.claude-sonnet-4-5-20250929-v1:0", region: "us-east-1").validateName() }
        let redis = RedisClient(configuration: try TestRedis.configuration())
        let ledger = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix)
        for budget in Self.unsafeNames {
            let refused = #expect(throws: LedgerError.self) { try budget.validateName() }
            #expect(refused?.code == .invalidArgument)
            let configuration = testConfiguration(budget, rpm: 5)
            #expect(throws: LedgerError.self, "\(budget.model)") {
                _ = try QuotaLedger(redis: redis, keyPrefix: testKeyPrefix, budgets: [configuration])
            }
            await #expect(throws: LedgerError.self) { try await ledger.seed(configuration) }
            if (try? budget.validate()) != nil {  // addressable: the script itself must refuse it too
                let reply = try await ledger.evaluate(
                    LedgerScripts.configure, budget, ["seed", "win", "2000", "n", "20", "rpm", "5"], keys: ledger.keys(budget).configure)
                #expect(reply.tag == "invalid" && reply.array?[1].string == "budget", "\(reply)")
                #expect(try await redis.send(["EXISTS", ledger.ledgerKey(budget)]) == .integer(0))
            }
        }
        await redis.shutdown()
    }
}
