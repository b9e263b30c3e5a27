import Foundation

/// The CLI's one JSON home: every `--json` output and JSON error is a `JSON` value written here.
///
/// Objects keep their members in the order given, because docs/cli.md documents each command's field order
/// (Foundation's `JSONEncoder` writes a keyed container's members in hash order on Linux, and `sortedKeys`
/// would be a different order). Strings are encoded by `JSONEncoder` (RFC 8259 escaping: quote, backslash,
/// control characters as `\u001b`), so no escaper is written by hand.
enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    /// `.int(value)` or `.null`.
    static func optional(_ value: Int?) -> JSON { value.map { .int($0) } ?? .null }
    /// `.double(value)` or `.null`.
    static func optional(_ value: Double?) -> JSON { value.map { .double($0) } ?? .null }
    /// `.string(value)` or `.null`.
    static func optional(_ value: String?) -> JSON { value.map { .string($0) } ?? .null }

    /// The JSON text: indented by two spaces when `pretty`, else on one line.
    func serialized(pretty: Bool) -> String {
        var text = ""
        write(to: &text, pretty: pretty, indent: 0)
        return text
    }

    private func write(to text: inout String, pretty: Bool, indent: Int) {
        let newline = pretty ? "\n" : ""
        let padding = pretty ? String(repeating: "  ", count: indent + 1) : ""
        let closing = pretty ? String(repeating: "  ", count: indent) : ""
        switch self {
        case .null: text += "null"
        case .bool(let value): text += value ? "true" : "false"
        case .int(let value): text += String(value)
        case .double(let value):
            if !value.isFinite {
                text += "null"
            } else if value == value.rounded(), abs(value) < 1e15 {
                text += String(Int64(value))
            } else {
                text += String(value)
            }
        case .string(let value): text += Self.quoted(value)
        case .array(let values):
            if values.isEmpty { text += "[]"; return }
            text += "[" + newline
            for (index, value) in values.enumerated() {
                text += padding
                value.write(to: &text, pretty: pretty, indent: indent + 1)
                text += (index < values.count - 1 ? "," : "") + newline
            }
            text += closing + "]"
        case .object(let members):
            if members.isEmpty { text += "{}"; return }
            text += "{" + newline
            for (index, (key, value)) in members.enumerated() {
                text += padding
                text += Self.quoted(key)
                text += pretty ? ": " : ":"
                value.write(to: &text, pretty: pretty, indent: indent + 1)
                text += (index < members.count - 1 ? "," : "") + newline
            }
            text += closing + "}"
        }
    }

    /// `string` as a JSON string literal, quotes included.
    static func quoted(_ string: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        // Encoding a String cannot fail (it is never a non-conforming float).
        return (try? String(decoding: encoder.encode(string), as: UTF8.self)) ?? "\"\""
    }
}
