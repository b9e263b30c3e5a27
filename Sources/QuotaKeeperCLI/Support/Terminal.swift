import Foundation

/// How output is styled: ANSI colour only when stdout is a terminal, `NO_COLOR` is unset (or empty) and
/// `TERM` is not `dumb`.
struct Style: Sendable {
    let colour: Bool

    static let standardOutput: Style = {
        let environment = ProcessInfo.processInfo.environment
        let noColour = !(environment["NO_COLOR"] ?? "").isEmpty || environment["TERM"] == "dumb"
        return Style(colour: isatty(STDOUT_FILENO) == 1 && !noColour)
    }()

    func bold(_ text: String) -> String { wrap(text, "1") }
    func dim(_ text: String) -> String { wrap(text, "2") }
    func red(_ text: String) -> String { wrap(text, "31") }
    func green(_ text: String) -> String { wrap(text, "32") }
    func yellow(_ text: String) -> String { wrap(text, "33") }

    /// Green under 70 %, yellow under 90 %, red from 90 %.
    func byLoad(_ text: String, _ fraction: Double) -> String {
        fraction >= 0.9 ? red(text) : fraction >= 0.7 ? yellow(text) : green(text)
    }

    private func wrap(_ text: String, _ code: String) -> String {
        colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    /// A usage bar such as `████████░░░░░░░░░░░░`: `width` cells, filled to `fraction` (clamped to 0...1).
    func bar(_ fraction: Double, width: Int = 20) -> String {
        let clamped = fraction.isFinite ? min(max(fraction, 0), 1) : 0
        let filled = Int((clamped * Double(width)).rounded())
        let text = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        return byLoad(text, fraction)
    }

    /// A sparkline of `values` (one character each, scaled to the largest value).
    static func sparkline(_ values: [Int]) -> String {
        let levels = Array("▁▂▃▄▅▆▇█")
        let top = values.max() ?? 0
        return String(values.map { value in
            guard top > 0, value > 0 else { return " " }
            return levels[min(levels.count - 1, (value * levels.count - 1) / top)]
        })
    }
}

/// Column-aligned text tables (ANSI sequences do not count toward a column's width).
enum Table {
    /// Renders `rows` with columns padded to their widest cell, two spaces apart; `rightAligned` columns are
    /// padded on the left. The first row is the header (rendered bold).
    static func render(_ rows: [[String]], rightAligned: Set<Int> = [], style: Style, indent: String = "") -> String {
        guard let header = rows.first else { return "" }
        var widths = Array(repeating: 0, count: header.count)
        for row in rows {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], visibleWidth(cell))
            }
        }
        var lines: [String] = []
        for (index, row) in rows.enumerated() {
            var cells: [String] = []
            for (column, cell) in row.enumerated() where column < widths.count {
                let padding = String(repeating: " ", count: widths[column] - visibleWidth(cell))
                let isLast = column == row.count - 1
                cells.append(rightAligned.contains(column) ? padding + cell : (isLast ? cell : cell + padding))
            }
            let line = indent + cells.joined(separator: "  ")
            lines.append(index == 0 ? style.bold(line) : line)
        }
        return lines.joined(separator: "\n")
    }

    /// Characters shown, without ANSI escape sequences.
    static func visibleWidth(_ text: String) -> Int {
        var width = 0
        var inEscape = false
        for character in text {
            if inEscape {
                if character.isLetter { inEscape = false }
            } else if character == "\u{1B}" {
                inEscape = true
            } else {
                width += 1
            }
        }
        return width
    }
}

/// Number and time formats of the tables (JSON carries raw numbers).
enum Format {
    /// `1234567` as `1,234,567`.
    static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { grouped.append(",") }
            grouped.append(digit)
        }
        return (value < 0 ? "-" : "") + grouped
    }

    /// A decimal with at most `digits` fraction digits and grouped thousands (`12.5`, `3`, `10,500.3`).
    static func decimal(_ value: Double, digits: Int = 1) -> String {
        var text = String(format: "%.\(digits)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        let parts = text.split(separator: ".", maxSplits: 1)
        guard let whole = Int(parts[0]) else { return text }
        return (text.hasPrefix("-") && whole == 0 ? "-" : "") + count(whole) + (parts.count > 1 ? "." + parts[1] : "")
    }

    /// `0.8` as `80%`.
    static func percent(_ fraction: Double) -> String { decimal(fraction * 100) + "%" }

    /// Milliseconds for people: `250ms`, `1.5s` (under 10 s), else whole units `90s` -> `1m30s`, `24h`, `4m58s`.
    static func duration(milliseconds: Int64) -> String {
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        if milliseconds < 10_000 { return decimal(Double(milliseconds) / 1000, digits: 3) + "s" }
        var seconds = (milliseconds + 500) / 1000
        var parts: [String] = []
        for (unit, size) in [("d", Int64(86_400)), ("h", 3600), ("m", 60)] where seconds >= size {
            parts.append("\(seconds / size)\(unit)")
            seconds %= size
        }
        if seconds > 0 || parts.isEmpty { parts.append("\(seconds)s") }
        return parts.joined()
    }

    /// A Redis time in ms since 1970 as `2026-11-26T19:45:00Z`.
    static func timestamp(milliseconds: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}

extension Duration {
    /// Whole milliseconds (rounded down).
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// Untrusted text made safe to print on a terminal: names read from Redis, Redis's error messages, input the
/// CLI refused. Control characters (C0, DEL, C1: escape sequences, carriage returns, bells) and invisible
/// format characters (bidirectional overrides, zero-width characters) are shown as `\x1b` or `\u{202e}`, so
/// nothing read from Redis can move the cursor, clear the screen, recolour or reorder what the CLI prints.
enum TerminalText {
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if !isUnsafe(scalar) {
                out.unicodeScalars.append(scalar)
            } else if scalar.value < 0x100 {
                out += String(format: "\\x%02x", scalar.value)
            } else {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            }
        }
        return out
    }

    /// A control (`Cc`) or format (`Cf`) character, or a line/paragraph separator.
    static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}
