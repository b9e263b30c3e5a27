import Testing
import TimeLimit

@Suite("withTimeLimit: the one deadline race")
struct TimeLimitTests {
    struct Refused: Error {}

    @Test("the body's answer or error when it ends first; nil and a cancelled body when the limit passes first")
    func race() async throws {
        #expect(try await withTimeLimit(.seconds(10)) { 7 } == 7)
        await #expect(throws: Refused.self) { try await withTimeLimit(.seconds(10)) { () async throws -> Int in throw Refused() } }
        let started = ContinuousClock.now
        let late = try await withTimeLimit(.milliseconds(50)) { () async throws -> Int in
            try await Task.sleep(for: .seconds(30))  // throws CancellationError when the limit cancels it
            return 1
        }
        #expect(late == nil)
        #expect(ContinuousClock.now - started < .seconds(5))
        // An optional answer of nil is an answer, not a timeout.
        let answeredNil: Int?? = try await withTimeLimit(.seconds(10)) { Int?.none }
        #expect(answeredNil == .some(nil))
    }

    @Test("a cancelled caller gets CancellationError at once, not at the limit")
    func cancelledCaller() async {
        let task = Task { try await withTimeLimit(.seconds(30)) { () async throws -> Int in try await Task.sleep(for: .seconds(30)); return 1 } }
        task.cancel()
        let started = ContinuousClock.now
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
