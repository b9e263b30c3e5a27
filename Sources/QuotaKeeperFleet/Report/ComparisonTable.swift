import Foundation

/// The comparison table printed at the end of a run.
enum ComparisonTable {
    static func render(_ report: FleetReport) -> String {
        let settings = report.settings
        var lines: [String] = []
        let quota = [settings.quotaRPM.map { "\($0) RPM" }, settings.quotaTPM.map { "\($0) TPM" }].compactMap { $0 }.joined(separator: ", ")
        let demand = settings.apps.map { "\($0.name) \(format($0.demandRPM)) RPM" }.joined(separator: ", ")
        lines.append("scenario \(settings.scenario): \(demand) against \(quota.isEmpty ? "no quota" : quota) on \(settings.primaryModel)"
            + (settings.fallbackModel.map { " (fallback \($0))" } ?? "") + ", apps call \(settings.api.rawValue)")
        lines.append("time scale: \(format(settings.windowSeconds)) s of wall time stand for 60 s; latencies below are in Bedrock seconds")
        lines.append("")
        let header = ["mode", "app", "sent", "ok", "failed", "late", "lost", "429 quota", "429 overl.", "503", "fallback", "breaker", "p50 s", "p95 s", "p99 s", "redis/req"]
        var rows: [[String]] = [header]
        for mode in report.modes {
            for app in mode.apps + [mode.fleet] {
                rows.append([
                    mode.mode, app.app, "\(app.attempted)", "\(app.succeeded)", "\(app.failed)", "\(app.late)", "\(app.lost)",
                    "\(app.quotaThrottles)", "\(app.overloaded)", "\(app.unavailable)", "\(app.fallbacksServed)",
                    "\(app.breakerOpenings)", seconds(app.latencyP50), seconds(app.latencyP95), seconds(app.latencyP99),
                    mode.mode == FleetMode.coordinated.rawValue ? String(format: "%.1f", app.redisRoundTripsPerRequest) : "-",
                ])
            }
        }
        lines += table(rows, separatorAfter: [0])
        lines.append("")
        for mode in report.modes where mode.source == .appInstances {
            let use = mode.observedUtilization.map(percent) ?? "-"
            lines.append("\(mode.mode): the endpoint has no bedrock-sim /stats; numbers above are what the app instances saw; "
                + "quota used by successful calls on \(settings.primaryModel): \(use)")
        }
        lines.append("referee (bedrock-sim GET /stats), per model:")
        var refereeRows: [[String]] = [["mode", "model", "received", "admitted", "quota 429", "overloaded", "503", "peak window", "utilization mean/min"]]
        for mode in report.modes {
            for (model, referee) in mode.referee.sorted(by: { $0.key == settings.primaryModel && $1.key != settings.primaryModel }) {
                let peak = referee.quotaRPM.map { "\(referee.peakWindowRequests)/\($0) req" }
                    ?? referee.quotaTPM.map { "\(referee.peakWindowTokens)/\($0) tok" } ?? "-"
                let use = !settings.demandExceedsQuota ? "n/a: demand < quota"
                    : referee.utilizationMean.map { mean in "\(percent(mean)) / \(percent(referee.utilizationMinimum ?? mean))" } ?? "-"
                refereeRows.append([
                    mode.mode, model, "\(referee.received)", "\(referee.admitted)", "\(referee.quotaThrottles)", "\(referee.overloaded)",
                    "\(referee.serviceUnavailable)", peak, use,
                ])
            }
        }
        lines += table(refereeRows, separatorAfter: [0])
        lines.append("utilization: the quota's binding dimension used in every full 60 s window of the demand period (mean / minimum)")
        for mode in report.modes {
            if let reached = mode.primaryRequestsDuringOverload {
                lines.append("\(mode.mode): \(reached) requests reached \(settings.primaryModel) during its overload period")
            }
        }
        for mode in report.modes {
            guard let answers = mode.reservationAnswers, !answers.isEmpty else { continue }
            let listed = answers.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            lines.append("\(mode.mode): \(mode.redisRoundTrips) Redis round trips; reservation answers: \(listed) "
                + "(each admission is also settled once)")
        }
        for mode in report.modes {
            guard let faults = mode.redisFaults else { continue }
            lines.append("")
            lines.append("Redis faults (\(mode.mode) mode, on the redis-server the fleet started; wall seconds since the mode's start):")
            var rows: [[String]] = [["fault", "from s", "to s", "admission gap s", "caller errors (in flight, to 1 s after)", "quota 429 (to 1 window after)"]]
            for fault in faults {
                let errors = fault.callerErrors.sorted { $0.key < $1.key }.map { "\($0.value) x \($0.key)" }.joined(separator: ", ")
                rows.append([
                    fault.fault, String(format: "%.2f", fault.startedAtSeconds), String(format: "%.2f", fault.endedAtSeconds),
                    String(format: "%.2f", fault.admissionGapSeconds), errors.isEmpty ? "none" : errors,
                    fault.quotaThrottles.map(String.init) ?? "-",
                ])
            }
            lines += table(rows, separatorAfter: [0], leftAlignedColumns: 1)
            lines.append("admission gap: the longest time without an admission overlapping the fault; the mode's median gap is "
                + String(format: "%.3f s", mode.admissionGapMedianSeconds ?? 0))
        }
        let failures = report.modes.flatMap { mode in mode.fleet.failures.sorted { $0.key < $1.key }.map { "\(mode.mode): \($0.value) x \($0.key)" } }
        if !failures.isEmpty {
            lines.append("")
            lines.append("typed errors returned to callers: " + failures.joined(separator: "; "))
        }
        return lines.joined(separator: "\n")
    }

    /// Rows in columns: the first `leftAlignedColumns` padded on the right, the others on the left.
    static func table(_ rows: [[String]], separatorAfter: Set<Int>, leftAlignedColumns: Int = 2) -> [String] {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var lines: [String] = []
        for (index, row) in rows.enumerated() {
            lines.append(row.enumerated().map { column, cell in
                column < leftAlignedColumns ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }.joined(separator: "  "))
            if separatorAfter.contains(index) { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        return lines
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%.1f", value)
    }

    static func seconds(_ value: Double) -> String { String(format: "%.1f", value) }

    static func percent(_ fraction: Double) -> String { String(format: "%.1f%%", fraction * 100) }
}
