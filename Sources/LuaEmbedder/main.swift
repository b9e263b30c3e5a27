import Foundation

// Build tool: `LuaEmbedder OUTPUT.swift a.lua b.lua ...` writes one Swift file with an
// `EmbeddedLuaScripts` enum holding each script's exact text, named after its file
// (`ledger_reserve.lua` becomes `ledgerReserve`). Run by the EmbedLuaScripts plugin only.

/// `ledger_reserve` or `ledger-reserve` -> `ledgerReserve`.
func identifier(fromFileStem stem: String) -> String {
    let words = stem.split(whereSeparator: { $0 == "_" || $0 == "-" || $0 == "." })
    guard let first = words.first else { return "_" }
    return first.lowercased() + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
}

/// A raw string delimiter longer than any run of `#` that follows a quote inside the text.
func rawDelimiter(for text: String) -> String {
    var longest = 0
    var current = -1
    for character in text {
        if character == "\"" {
            current = 0
        } else if character == "#", current >= 0 {
            current += 1
            longest = max(longest, current)
        } else {
            current = -1
        }
    }
    return String(repeating: "#", count: longest + 1)
}

let arguments = CommandLine.arguments.dropFirst()
guard let outputPath = arguments.first else {
    FileHandle.standardError.write(Data("usage: LuaEmbedder OUTPUT.swift SCRIPT.lua...\n".utf8))
    exit(64)
}
var generated = "// Generated at build time from lua/ by the EmbedLuaScripts plugin. Do not edit.\n\n"
generated += "/// The exact text of every script in the package's `lua/` folder.\n"
generated += "enum EmbeddedLuaScripts {\n"
var names: [(identifier: String, file: String)] = []
for path in arguments.dropFirst() {
    let url = URL(fileURLWithPath: path)
    let text = try String(contentsOf: url, encoding: .utf8)
    let name = identifier(fromFileStem: url.deletingPathExtension().lastPathComponent)
    let delimiter = rawDelimiter(for: text)
    names.append((name, url.lastPathComponent))
    generated += "    /// `lua/\(url.lastPathComponent)`.\n"
    generated += "    static let \(name) = \(delimiter)\"\"\"\n\(text)\(text.hasSuffix("\n") ? "" : "\n")\"\"\"\(delimiter)\n\n"
}
generated += "    /// Every script by its file name.\n"
generated += "    static let byFileName: [String: String] = [\n"
generated += names.map { "        \"\($0.file)\": \($0.identifier)," }.joined(separator: "\n")
generated += names.isEmpty ? "    :]\n" : "\n    ]\n"
generated += "}\n"
let existing = try? String(contentsOfFile: outputPath, encoding: .utf8)
if existing != generated {
    try generated.write(toFile: outputPath, atomically: true, encoding: .utf8)
}
