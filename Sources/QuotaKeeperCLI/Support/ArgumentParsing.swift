import ArgumentParser
import QuotaKeeper

/// Parsers for the CLI's argument syntaxes (budget names, durations, limits); each throws a `ValidationError`
/// naming the bad value (escaped: the parser prints the message as it is) and the expected form.
enum ArgumentSyntax {
    /// A budget named `MODEL@REGION` (split at the last `@`), as `BudgetID.description` prints it.
    static func budget(_ text: String) throws -> BudgetID {
        guard text.contains("@") else {
            throw ValidationError("budget '\(TerminalText.escaped(text))' must be MODEL@REGION, e.g. anthropic.claude-sonnet-4-5-20250929-v1:0@us-east-1")
        }
        let budget = uncheckedBudget(text)
        do {
            try budget.validateName()
        } catch {
            throw ValidationError(TerminalText.escaped("budget '\(text)': \(error.message) (MODEL@REGION)"))
        }
        return budget
    }

    /// `text` split at its last `@` (no `@`: all of it is the model), not checked: `budget(_:)` checks it.
    static func uncheckedBudget(_ text: String) -> BudgetID {
        guard let at = text.lastIndex(of: "@") else { return BudgetID(model: text, region: "") }
        return BudgetID(model: String(text[..<at]), region: String(text[text.index(after: at)...]))
    }

    /// A duration such as `500ms`, `90s`, `5m`, `24h`, `7d` or `1h30m`: positive, with a unit on every number.
    static func duration(_ text: String) throws -> Duration {
        let invalid = ValidationError("invalid duration '\(TerminalText.escaped(text))': use a positive number with a unit, e.g. 500ms, 90s, 5m, 24h, 7d, 1h30m")
        var total: Duration = .zero
        var rest = Substring(text.lowercased())
        guard !rest.isEmpty else { throw invalid }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !digits.isEmpty, let value = Double(digits), value.isFinite, value >= 0 else { throw invalid }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let seconds: Double
            switch unit {
            case "ms": seconds = 0.001
            case "s": seconds = 1
            case "m": seconds = 60
            case "h": seconds = 3600
            case "d": seconds = 86_400
            default: throw invalid
            }
            guard value * seconds <= 366 * 86_400 else {
                throw ValidationError("invalid duration '\(TerminalText.escaped(text))': at most one year")
            }
            total += .milliseconds(Int64((value * seconds * 1000).rounded()))
        }
        guard total > .zero else { throw invalid }
        return total
    }

    /// A limit: a whole number from 1 to 10^15, or `none` to remove the limit.
    static func limit(_ text: String) throws -> LimitSetting {
        if text.lowercased() == "none" { return .none }
        guard let value = wholeNumber(text), (1...1_000_000_000_000_000).contains(value) else {
            throw ValidationError("invalid limit '\(TerminalText.escaped(text))': use a whole number from 1 to 10^15, or 'none' to remove the limit")
        }
        return .value(value)
    }

    /// A share from 0.01 to 1, given as a fraction (`0.8`) or a percentage (`80%`).
    static func share(_ text: String) throws -> Double {
        let isPercent = text.hasSuffix("%")
        guard let number = Double(isPercent ? String(text.dropLast()) : text), number.isFinite else {
            throw ValidationError("invalid share '\(TerminalText.escaped(text))': use a fraction from 0.01 to 1 or a percentage such as 80%")
        }
        let share = isPercent ? number / 100 : number
        guard (0.01...1).contains(share) else {
            throw ValidationError("invalid share '\(TerminalText.escaped(text))': must be from 0.01 to 1 (1% to 100%)")
        }
        return share
    }

    /// An app's cap, `APP=SHARE` (`checkout=0.5`, `checkout=50%`) or `APP=none` to remove it.
    static func appCap(_ text: String) throws -> AppCapSetting {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, (1...64).contains(parts[0].utf8.count),
              parts[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
        else {
            throw ValidationError("invalid app cap '\(TerminalText.escaped(text))': use APP=SHARE (APP: 1-64 characters of A-Z a-z 0-9 . _ -), e.g. checkout=50%")
        }
        if parts[1].lowercased() == "none" { return AppCapSetting(app: parts[0], share: nil) }
        let isPercent = parts[1].hasSuffix("%")
        guard let number = Double(isPercent ? String(parts[1].dropLast()) : parts[1]), number.isFinite,
              (0.001...1).contains(isPercent ? number / 100 : number)
        else { throw ValidationError("invalid app cap '\(TerminalText.escaped(text))': the share must be from 0.001 to 1 (0.1% to 100%), or none") }
        return AppCapSetting(app: parts[0], share: isPercent ? number / 100 : number)
    }

    /// Digits only: `Int("+5")` would accept a sign, which no count or limit is written with.
    static func wholeNumber(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        return Int(text)
    }

    /// A whole number of at least `minimum`, naming the option in the error.
    static func count(_ option: String, minimum: Int = 0, maximum: Int = 100_000_000) -> @Sendable (String) throws -> Int {
        { text in
            guard let value = wholeNumber(text), (minimum...maximum).contains(value) else {
                throw ValidationError("invalid \(option) '\(TerminalText.escaped(text))': use a whole number from \(minimum) to \(maximum)")
            }
            return value
        }
    }
}

/// The budget a command names, `MODEL@REGION`. Checked by `validate()` (a usage error), not by a transform:
/// the parser quotes a value its transform refused as it was typed, and a name (one copied from Redis, say) may
/// hold escape sequences; `ArgumentSyntax.budget`'s message shows them escaped.
struct BudgetArgument: ParsableArguments {
    @Argument(help: ArgumentHelp("The budget: MODEL@REGION.", valueName: "name")) var text: String

    func validate() throws { _ = try ArgumentSyntax.budget(text) }

    var id: BudgetID { ArgumentSyntax.uncheckedBudget(text) }
}

/// `BudgetArgument` for a command that may name one budget or none.
struct OptionalBudgetArgument: ParsableArguments {
    @Argument(help: ArgumentHelp("The budget: MODEL@REGION (optional).", valueName: "name")) var text: String?

    func validate() throws { if let text { _ = try ArgumentSyntax.budget(text) } }

    var id: BudgetID? { text.map(ArgumentSyntax.uncheckedBudget) }
}

/// A limit given to `budget set`: a value, or `none` to remove it.
enum LimitSetting: Sendable, Hashable {
    case value(Int)
    case none

    var value: Int? {
        if case .value(let value) = self { return value }
        return nil
    }
}

/// An app cap given to `budget set`: the app's share of the window limits, or nil to remove its cap.
struct AppCapSetting: Sendable, Hashable {
    var app: String
    var share: Double?
}
