import Foundation
import QuotaKeeperTestSupport
import Testing

/// `quotakeeper-fleet --redis-fault`: faults applied to the redis-server the fleet starts, run through the built
/// binary (the orchestrator, one process per app, bedrock-sim as the referee).
@Suite("quotakeeper-fleet --redis-fault", .serialized)
struct FleetFaultTests {
    @Test("pause, restart, client-kill and script-flush in one run: each reported with its time, gap, errors and 429s")
    func everyFaultInOneRun() async throws {
        // Demand under the quota (120 of 150 RPM), so that every caller error comes from a fault, not from a
        // backlog above the quota.
        let (report, output) = try await FleetRun.runWithOutput([
            "--scenario", "spike", "--demand-rpm", "40,40,40", "--modes", "coordinated", "--window-seconds", "4",
            "--duration-seconds", "12", "--redis-fault", "pause:2+1.5", "--redis-fault", "restart:5+0.5",
            "--redis-fault", "client-kill:8", "--redis-fault", "script-flush:10",
        ], ownRedis: true)
        let coordinated = try report.mode("coordinated")
        let faults = try #require(coordinated.redisFaults)
        #expect(faults.map(\.fault) == ["pause:2+1.5", "restart:5+0.5", "client-kill:8", "script-flush:10"])
        for (fault, planned) in zip(faults, [(2.0, 1.5), (5.0, 0.5), (8.0, 0.0), (10.0, 0.0)]) {
            #expect(abs(fault.startedAtSeconds - planned.0) < 0.5, "\(fault.fault) applied at \(fault.startedAtSeconds) s")
            #expect(fault.endedAtSeconds >= fault.startedAtSeconds + planned.1, "\(fault.fault) lasted its duration")
            #expect(fault.quotaThrottles != nil, "the referee's 429s are reported")
            for error in fault.callerErrors.keys { #expect(error.hasPrefix("CallPathError."), "untyped \(error)") }
        }
        // Nothing is admitted while Redis is stopped; a connection reset and a flushed script cache never reach
        // callers as a store failure (with failClosed, the only way a Redis fault reaches them). Other typed
        // errors there are the pause's aftermath: calls admitted late time out in Bedrock and may open the
        // shared breaker for a while (allTargetsFailed).
        #expect(faults[0].admissionGapSeconds >= 1.2, "admissions went on while Redis was paused: \(faults[0])")
        #expect(faults[1].callerErrors.keys.allSatisfy { $0 == "CallPathError.storeUnavailable" || $0 == "CallPathError.allTargetsFailed" })
        #expect(faults[2].callerErrors["CallPathError.storeUnavailable"] == nil, "CLIENT KILL reached callers: \(faults[2].callerErrors)")
        #expect(faults[3].callerErrors["CallPathError.storeUnavailable"] == nil, "SCRIPT FLUSH reached callers: \(faults[3].callerErrors)")
        #expect((coordinated.admissionGapMedianSeconds ?? 1) < 0.5)
        #expect(coordinated.fleet.lost == 0)
        #expect(coordinated.fleet.succeeded + coordinated.fleet.failed == coordinated.fleet.attempted)
        for error in coordinated.fleet.failures.keys { #expect(error.hasPrefix("CallPathError."), "untyped failure \(error)") }
        #expect(coordinated.redisRoundTrips > coordinated.fleet.succeeded, "round trips counted across the restart")
        #expect(output.contains("Redis faults (coordinated mode") && output.contains("restart:5+0.5"))
    }

    @Test("--redis-fault with --redis-url is refused (exit 5, typed); a malformed fault is a usage error (exit 64)")
    func refusals() async throws {
        let external = try await FleetRun.runFleet([
            "--redis-url", TestRedis.url, "--modes", "coordinated", "--duration-seconds", "2", "--redis-fault", "pause:1+0.5",
        ])
        #expect(external.status == 5, "\(external.errorOutput)")
        #expect(external.errorOutput.contains("FleetError.redisFaultRefused") && external.errorOutput.contains("--redis-url"))
        #expect(external.output.isEmpty)
        for bad in ["pause:1", "client-kill:1+2", "explode:1", "pause:-1+1", "restart:1+0", "pause:5+1"] {
            let result = try await FleetRun.runFleet(["--modes", "coordinated", "--duration-seconds", "4", "--redis-fault", bad])
            #expect(result.status == 64, "\(bad): \(result.errorOutput)")
            #expect(result.errorOutput.contains("--redis-fault '\(bad)'"), "\(bad): \(result.errorOutput)")
        }
        let unordered = try await FleetRun.runFleet([
            "--modes", "coordinated", "--duration-seconds", "4", "--redis-fault", "client-kill:3", "--redis-fault", "pause:1+1",
        ])
        #expect(unordered.status == 64 && unordered.errorOutput.contains("time order"), "\(unordered.errorOutput)")
        let uncoordinated = try await FleetRun.runFleet(["--modes", "uncoordinated", "--redis-fault", "script-flush:1"])
        #expect(uncoordinated.status == 64 && uncoordinated.errorOutput.contains("coordinated mode"), "\(uncoordinated.errorOutput)")
    }
}
