import Testing
@testable import QuotaKeeper

/// What a process remembers of an app's next turn in a budget's line (``LineTurns``), without Redis.
@Suite("Line turns")
struct LineTurnsTests {
    let key = LineTurns.Key(budget: BudgetID(model: "m", region: "us-east-1"), app: "app-a", priority: .interactive)
    let clock = ContinuousClock()

    func learned(turnIn wait: Duration) -> (LineTurns, ContinuousClock.Instant) {
        let turns = LineTurns(), now = clock.now
        let denial = Denial(
            budget: key.budget, reason: .requestsPerWindow, dimension: "requests", usage: 10, limit: 10, retryAfter: wait)
        turns.learn(key, denial, turn: now + wait)
        return (turns, now)
    }

    @Test("a caller whose wait ends before the known turn is refused here, with the time left until the turn")
    func refusesBeforeTheTurn() {
        let (turns, now) = learned(turnIn: .seconds(20))
        let refusal = turns.refusal(key, deadline: now + .seconds(5), now: now + .seconds(1))
        #expect(refusal?.retryAfter == .seconds(19))
        #expect(turns.refusal(key, deadline: now + .seconds(25), now: now + .seconds(1)) == nil)   // may ask the ledger
    }

    @Test("what is known is per budget, app and class, and an admission forgets it")
    func knownTurnsArePerKeyAndForgotten() {
        let (turns, now) = learned(turnIn: .seconds(20))
        var batch = key
        batch.priority = .batch
        #expect(turns.refusal(batch, deadline: now + .seconds(5), now: now) == nil)
        #expect(turns.refusal(key, deadline: now + .seconds(5), now: now) != nil)
        turns.forget(key)
        #expect(turns.refusal(key, deadline: now + .seconds(5), now: now) == nil)
    }

    @Test("a known turn that has passed refuses nobody")
    func passedTurnsAreForgotten() {
        let (turns, now) = learned(turnIn: .seconds(2))
        #expect(turns.refusal(key, deadline: now + .seconds(3), now: now + .seconds(3)) == nil)
    }
}
