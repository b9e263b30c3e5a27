import Foundation
import Testing

@testable import QuotaKeeperEMF

/// The shipped operations assets (docs/operations) and docs/observability.md against the code: every JSON
/// asset parses, and every metric, dimension value, log message and metadata key they rely on is one the
/// library really emits.
@Suite struct OperationsAssetsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let operations = repository.appendingPathComponent("docs/operations")

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent(relativePath), encoding: .utf8)
    }

    /// Every Swift file of the library (`QuotaKeeper`, `QuotaKeeperRedis`), calls' line breaks after `(` removed.
    static func librarySources() throws -> String {
        var text = ""
        for target in ["QuotaKeeper", "QuotaKeeperRedis"] {
            let folder = repository.appendingPathComponent("Sources/\(target)").resolvingSymlinksInPath()
            let enumerator = try #require(FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil))
            for case let url as URL in enumerator where url.pathExtension == "swift" {
                text += try String(contentsOf: url, encoding: .utf8) + "\n"
            }
        }
        #expect(text.count > 10_000, "the library's sources were found")
        return text.replacing(try Regex(#"\(\s+""#), with: "(\"")
    }

    /// The swift-metrics series the library creates: label -> dimension names.
    static func libraryMetrics() throws -> [String: [[String]]] {
        let pattern = try Regex(#"(?:Counter|FloatingPointCounter|Timer|Gauge|Recorder|Meter)\(label: "([^"]+)", dimensions: \[([^\]]*)\]"#)
        let sources = try librarySources()
        var metrics: [String: [[String]]] = [:]
        for match in sources.matches(of: pattern) {
            let label = String(match.output[1].substring!)
            let dimensionList = String(match.output[2].substring!)
            let names = dimensionList.matches(of: try Regex(#"\("([^"]+)","#)).map { String($0.output[1].substring!) }
            metrics[label, default: []].append(names)
        }
        return metrics
    }

    /// Every `quotakeeper_…` metric name mentioned in `text` (histogram series suffixes removed).
    static func referencedMetrics(in text: String) throws -> Set<String> {
        Set(text.matches(of: try Regex(#"quotakeeper_[a-z_]+"#)).map { match in
            var name = String(text[match.range])
            for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) {
                name.removeLast(suffix.count)
            }
            return name
        })
    }

    @Test func everyJSONAssetParses() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.operations, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
        #expect(Set(files.map(\.lastPathComponent)).isSuperset(of: ["dashboard.json", "grafana-dashboard.json"]))
        for file in files {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: file))
            #expect(object is [String: Any], "\(file.lastPathComponent) is a JSON object")
        }
    }

    @Test func libraryMetricsAreFoundAndValidForPrometheus() throws {
        let metrics = try Self.libraryMetrics()
        #expect(metrics.keys.contains("quotakeeper_calls_total"))
        #expect(metrics.keys.contains("quotakeeper_ledger_reservations_total"))
        let metricName = try Regex(#"^[a-zA-Z_:][a-zA-Z0-9_:]*$"#)
        let labelName = try Regex(#"^[a-zA-Z_][a-zA-Z0-9_]*$"#)
        for (label, dimensionLists) in metrics {
            #expect(label.wholeMatch(of: metricName) != nil, "\(label) is a valid Prometheus metric name")
            // swift-prometheus needs every series of a name to use the same label names.
            #expect(Set(dimensionLists.map { $0.sorted() }).count == 1, "\(label) always has the same dimension names")
            for name in dimensionLists.joined() {
                #expect(name.wholeMatch(of: labelName) != nil && !name.hasPrefix("__"), "\(label): \(name) is a valid Prometheus label name")
            }
        }
    }

    @Test func everyLibraryMetricIsDocumented() throws {
        let documentation = try Self.text("docs/observability.md")
        for label in try Self.libraryMetrics().keys {
            #expect(documentation.contains("`\(label)`"), "docs/observability.md documents \(label)")
        }
    }

    @Test func assetsReadOnlyMetricsTheLibraryEmits() throws {
        let emitted = Set(try Self.libraryMetrics().keys)
        for asset in ["alarms.yaml", "dashboard.json", "grafana-dashboard.json", "logs-insights.md"] {
            let referenced = try Self.referencedMetrics(in: Self.text("docs/operations/\(asset)"))
            #expect(!referenced.isEmpty)
            #expect(referenced.subtracting(emitted).isEmpty, "\(asset) reads unknown metrics \(referenced.subtracting(emitted).sorted())")
        }
    }

    @Test func successRateAlarmCountsEveryFailureOutcome() throws {
        let alarms = try Self.text("docs/operations/alarms.yaml")
        let codes = try Self.text("Sources/QuotaKeeper/CallPath/CallPathError.swift")
            .matches(of: try Regex(#"static let \w+ = Code\("(\w+)"\)"#)).map { String($0.output[1].substring!) }
        #expect(codes.count >= 5)
        for code in codes {
            #expect(alarms.contains("Value: failed_\(code)}"), "the success-rate alarm counts failed_\(code)")
        }
        #expect(alarms.contains("Value: served}") && alarms.contains("Value: served_by_fallback}"))
    }

    @Test func httpStatusDimensionCoversEveryBedrockErrorKind() throws {
        let source = try Self.text("Sources/BedrockErrors/BedrockErrorKind.swift")
        let kinds = source.matches(of: try Regex(#"(?m)^\s*case (\w+)(?: = "([^"]+)")?\s*$"#)).map { match in
            String((match.output[2].substring ?? match.output[1].substring)!)
        }
        #expect(kinds.count >= 17)
        let mapping = EMFConfiguration.Dimensions.Derived.bedrockHTTPStatus.values
        let unmapped = Set(kinds).subtracting(mapping.keys)
        #expect(unmapped == ["connection-failed", "unknown"], "only kinds without an HTTP answer map to none")
        #expect(Set(mapping.keys).isSubset(of: kinds), "no stale kind in the mapping")
        // The dashboards' and alarms' 429/503 classes.
        #expect(mapping.filter { $0.value == "503" }.keys.sorted() == ["service-unavailable", "too-many-connections"])
    }

    /// docs/observability.md's log-line catalogue ("Every line") against every `logger.<level>("…"` call of
    /// the library, both ways, with levels; an interpolated message (`reservation \(mode)d`) stands for the
    /// catalogue's messages with its constant parts.
    @Test func everyLogLineIsCatalogued() throws {
        let documentation = try Self.text("docs/observability.md")
        let catalogue = try #require(documentation.range(of: "### Every line").map { String(documentation[$0.upperBound...]) })
        var documented: [String: String] = [:]  // message -> level
        for row in catalogue.matches(of: try Regex(#"(?m)^\| `([^`]+)`(?:, `([^`]+)`)? \| (trace|debug|info|notice|warning|error|critical) \|"#)) {
            for index in [1, 2] {
                if let message = row.output[index].substring { documented[String(message)] = String(row.output[3].substring!) }
            }
        }
        let written = try Self.librarySources()
            .matches(of: try Regex(#"logger\.(trace|debug|info|notice|warning|error|critical)\("((?:[^"\\]|\\.)*)""#))
            .map { (level: String($0.output[1].substring!), message: String($0.output[2].substring!)) }
        #expect(written.count >= 20, "the library's log lines were found")
        let interpolation = try Regex(#"\\\([^)]*\)"#)
        let literals = Set(written.map(\.message).filter { !$0.contains(interpolation) })
        var matched: Set<String> = []
        for line in written {
            let parts = line.message.split(separator: interpolation, omittingEmptySubsequences: false).map(String.init)
            let messages = documented.keys.filter { message in
                parts.count == 1
                    ? message == line.message
                    : !literals.contains(message) && message.hasPrefix(parts.first!) && message.hasSuffix(parts.last!)
            }
            #expect(!messages.isEmpty, "\"\(line.message)\" is in the log-line catalogue of docs/observability.md")
            for message in messages {
                #expect(documented[message] == line.level, "\"\(message)\" is documented at \(line.level)")
                matched.insert(message)
            }
        }
        #expect(Set(documented.keys).subtracting(matched).isEmpty, "catalogued but not logged: \(Set(documented.keys).subtracting(matched).sorted())")
    }

    @Test func logsInsightsQueriesMatchRealLogLines() throws {
        let queries = try Self.text("docs/operations/logs-insights.md")
        let sources = try Self.librarySources()
        let tableMessages = queries.matches(of: try Regex(#"(?m)^\| `([^`]+)` \| (?:trace|debug|info|notice|warning|error) \|"#))
            .map { String($0.output[1].substring!) }
        #expect(tableMessages.count >= 10)
        for message in tableMessages {
            #expect(sources.contains("(\"\(message)\""), "\"\(message)\" is a message the library logs")
        }
        let keys = Set(queries.matches(of: try Regex(#"(?:quotakeeper|redis)\\?\.[a-z_]+"#)).map {
            String(queries[$0.range]).replacingOccurrences(of: "\\", with: "")
        }).subtracting(["quotakeeper.call", "quotakeeper.ledger", "quotakeeper.redis"])  // logger labels
        #expect(keys.count >= 12)
        for key in keys {
            #expect(sources.contains("\"\(key)\""), "metadata key \(key) is one the library writes")
        }
    }
}
