import BedrockErrors
import Foundation
import QuotaKeeper
import QuotaKeeperTestSupport
import Testing

@Suite("breaker transition log lines")
struct BreakerLogTests {
    @Test("the outcome report that opens the shared breaker logs 'breaker opened'; the probe that closes it logs 'breaker closed after probes'")
    func transitionsAreLogged() async throws {
        var breaker = BreakerConfiguration()
        breaker.consecutiveFailureThreshold = 1
        breaker.openDuration = .milliseconds(300)
        breaker.halfOpenProbes = 1
        breaker.successesToClose = 1
        let log = RecordedLog()
        let harness = try CallPathHarness(breaker: breaker)
        let coordinator = harness.coordinator(logger: log.logger())
        let bedrock = BedrockDouble([harness.primary: [.failure(.serviceUnavailable), .success(input: 10, output: 1)]])
        var options = CallOptions(app: "a")
        options.maximumWaitPerTarget = .zero  // an open breaker skips the target instead of waiting for half-open
        _ = try? await coordinator.call(route: [harness.primary], estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 10), options: options) {
            try await bedrock.call($0, prompt: "hello")
        }
        let opened = log.all.filter { $0.hasPrefix("info breaker opened ") }
        #expect(opened.count == 1, "\(log.all)")
        #expect(opened.first?.contains("\"quotakeeper.budget\": \(harness.primary)") == true, "\(opened)")
        #expect(opened.first?.contains("\"quotakeeper.probe\": false") == true, "\(opened)")
        #expect(try await harness.ledger.status(of: harness.primary).breaker.state == .open)

        try await Task.sleep(for: .milliseconds(400))  // half-open: the next call is the probe
        let result = try await coordinator.call(route: [harness.primary], estimate: CallEstimate(inputTokens: 10, maxOutputTokens: 10), options: options) {
            try await bedrock.call($0, prompt: "hello")
        }
        #expect(result.target == harness.primary)
        #expect(log.all.filter { $0.hasPrefix("info breaker closed after probes ") }.count == 1, "\(log.all)")
        #expect(try await harness.ledger.status(of: harness.primary).breaker.state == .closed)
        try await harness.cleanUp()
    }
}
