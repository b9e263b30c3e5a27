import Foundation

/// A fault `--redis-fault` applies to the redis-server the fleet started, at a time of the coordinated mode.
///
/// Spelled `pause:AT+DURATION`, `restart:AT+DOWNTIME`, `client-kill:AT` or `script-flush:AT`, times in wall
/// seconds since the mode's start (decimals allowed), e.g. `pause:5+2`.
struct RedisFault: Codable, Sendable, Hashable, CustomStringConvertible {
    enum Kind: String, Codable, Sendable, CaseIterable {
        /// SIGSTOP, then SIGCONT after the duration: connections stay open, nothing is answered.
        case pause
        /// kill -9, then the server starts again on the same port after the downtime, empty (no persistence).
        case restart
        /// `CLIENT KILL TYPE normal`: every client connection is reset.
        case clientKill = "client-kill"
        /// `SCRIPT FLUSH`: the script cache is emptied (the next EVALSHA answers NOSCRIPT).
        case scriptFlush = "script-flush"

        var hasDuration: Bool { self == .pause || self == .restart }
    }

    var kind: Kind
    /// Wall seconds since the mode's start.
    var at: Double
    /// Wall seconds paused or down (pause, restart); 0 for the instantaneous faults.
    var duration: Double

    /// When the fault is over (wall seconds since the mode's start).
    var end: Double { at + duration }

    var description: String {
        kind.rawValue + ":" + Self.format(at) + (kind.hasDuration ? "+" + Self.format(duration) : "")
    }

    /// Parses one `--redis-fault` value.
    /// - Throws: `RedisFault.ParseError` naming the value and the expected form.
    init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let kind = Kind(rawValue: parts[0]) else {
            throw ParseError(text, "use pause:AT+DURATION, restart:AT+DOWNTIME, client-kill:AT or script-flush:AT")
        }
        let times = parts[1].split(separator: "+", omittingEmptySubsequences: false).map { Self.seconds(String($0)) }
        switch (kind.hasDuration, times.count) {
        case (true, 2):
            guard let at = times[0], let duration = times[1], duration > 0 else {
                throw ParseError(text, "\(kind.rawValue) needs AT+\(kind == .pause ? "DURATION" : "DOWNTIME") in seconds, the second one above 0")
            }
            self.init(kind: kind, at: at, duration: duration)
        case (false, 1):
            guard let at = times[0] else { throw ParseError(text, "\(kind.rawValue) needs AT in seconds") }
            self.init(kind: kind, at: at, duration: 0)
        default:
            throw ParseError(text, kind.hasDuration ? "\(kind.rawValue) takes AT+DURATION" : "\(kind.rawValue) takes AT alone")
        }
    }

    init(kind: Kind, at: Double, duration: Double) {
        self.kind = kind
        self.at = at
        self.duration = duration
    }

    /// Checks a run's faults against its demand period: each within it, in order, none overlapping the previous.
    static func validate(_ faults: [RedisFault], durationSeconds: Double) throws {
        var previous: RedisFault?
        for fault in faults {
            guard fault.end <= durationSeconds else {
                throw ParseError(fault.description, "it must end within the \(format(durationSeconds)) s of demand (--duration-seconds)")
            }
            if let previous, fault.at < previous.end {
                throw ParseError(fault.description, "faults must be given in time order and not overlap (after \(previous))")
            }
            previous = fault
        }
    }

    /// A non-negative decimal number of seconds of at most 3600 (digits and one point only).
    static func seconds(_ text: String) -> Double? {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(text), value.isFinite, value <= 3600 else { return nil }
        return value
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    struct ParseError: Error, CustomStringConvertible {
        let description: String
        init(_ value: String, _ problem: String) {
            description = "--redis-fault '\(value.unicodeScalars.allSatisfy { $0.properties.generalCategory != .control } ? value : "?")': \(problem)"
        }
    }
}
