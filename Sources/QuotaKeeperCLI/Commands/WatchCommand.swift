import ArgumentParser
import Dispatch
import Foundation
import QuotaKeeper

/// `quotakeeper watch [NAME] [--interval 2s] [--iterations N]`
struct WatchCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "The status view (of the budget named, else of every budget), refreshed until Ctrl-C (or --iterations).",
        discussion: """
            On a terminal each frame is drawn over the last one (cursor home, clear to end of line and screen: \
            no flicker) with the cursor hidden; Ctrl-C restores the cursor and exits 0. Not on a terminal, \
            frames follow each other; with --json each frame is one line of JSON (the 'status --json' object \
            plus 'frame'). A Redis failure is shown in the frame and the view keeps refreshing.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var budget: OptionalBudgetArgument
    var name: BudgetID? { budget.id }
    @Option(help: ArgumentHelp("Time between refreshes.", valueName: "duration"), transform: ArgumentSyntax.duration)
    var interval: Duration = .seconds(2)
    @Option(help: ArgumentHelp("Stop after this many frames (default: until Ctrl-C).", valueName: "n"), transform: ArgumentSyntax.count("--iterations", minimum: 1))
    var iterations: Int?
    @Option(name: .customLong("apps-since"), help: ArgumentHelp("How far back top apps are summed.", valueName: "duration"), transform: ArgumentSyntax.duration)
    var appsSince: Duration = .seconds(300)

    private static let hideCursor = "\u{1B}[?25l", showCursor = "\u{1B}[?25h"
    private static let home = "\u{1B}[H", clearLine = "\u{1B}[K", clearBelow = "\u{1B}[J"

    func validate() throws { _ = try HistorySpan.minutes(appsSince, option: "--apps-since") }

    func execute() async throws {
        let minutes = try HistorySpan.minutes(appsSince, option: "--apps-since")
        let redraw = !output.json && isatty(STDOUT_FILENO) == 1
        let signals = redraw ? Self.restoreCursorOnSignals() : []
        if redraw { StandardStream.output.write(Self.hideCursor + Self.home + "\u{1B}[2J") }
        defer {
            if redraw { StandardStream.output.write(Self.showCursor) }
            signals.forEach { $0.cancel() }
        }
        try await connection.withLedger { ledger in
            var frame = 0
            while iterations.map({ frame < $0 }) ?? true {
                frame += 1
                try await draw(frame: frame, ledger: ledger, appMinutes: minutes, redraw: redraw)
                if iterations.map({ frame < $0 }) ?? true { try await Task.sleep(for: interval) }
            }
        }
    }

    /// Draws one frame; a Redis failure becomes a line of the frame (the view keeps refreshing).
    private func draw(frame: Int, ledger: QuotaLedger, appMinutes: Int, redraw: Bool) async throws {
        let prefix = connection.resolvedPrefix
        let body: String
        do {
            let reports = try await StatusCommand.reports(name, ledger: ledger, appMinutes: appMinutes)
            if output.json {
                guard case .object(let members) = StatusCommand.json(reports, prefix: prefix) else { return }
                StandardStream.output.write(JSON.object([("frame", .int(frame))] + members).serialized(pretty: false) + "\n")
                return
            }
            body = StatusCommand.text(reports, prefix: prefix, style: .standardOutput)
        } catch {
            let failure = CLIFailure(error)
            guard failure.status == .redisUnavailable else { throw error }
            if output.json {
                StandardStream.output.write(JSON.object([
                    ("frame", .int(frame)), ("prefix", .string(prefix)),
                    ("error", .object([("code", .string(failure.status.name)), ("message", .string(failure.message))])),
                ]).serialized(pretty: false) + "\n")
                return
            }
            body = Style.standardOutput.red(failure.message)
        }
        let time = Format.timestamp(milliseconds: Int64(Date().timeIntervalSince1970 * 1000))
        let header = Style.standardOutput.dim(
            "quotakeeper watch  prefix '\(prefix)'  every \(Format.duration(milliseconds: interval.wholeMilliseconds))  \(time)  frame \(frame)"
                + (redraw ? "  (Ctrl-C to stop)" : ""))
        if redraw {
            let lines = ([header, ""] + body.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
            StandardStream.output.write(Self.home + lines.map { $0 + Self.clearLine }.joined(separator: "\n") + "\n" + Self.clearBelow)
        } else {
            StandardStream.output.write(header + "\n" + body + "\n\n")
        }
    }

    /// On SIGINT or SIGTERM: shows the cursor again and exits 0.
    private static func restoreCursorOnSignals() -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                StandardStream.output.write(showCursor + "\n")
                Foundation.exit(0)
            }
            source.resume()
            return source
        }
    }
}
