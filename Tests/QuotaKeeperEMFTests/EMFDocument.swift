import Foundation
import Synchronization
import Testing

@testable import QuotaKeeperEMF

/// One EMF line, parsed and checked against the CloudWatch Embedded Metric Format specification.
///
/// The checks: a JSON object on one line; `_aws` with an integer `Timestamp` and a non-empty
/// `CloudWatchMetrics` array and nothing else; each directive with exactly `Namespace` (1-255 characters),
/// `Dimensions` (at least one set of at most 30 keys, each key a string member of the root) and `Metrics` (at
/// most 100 definitions of `Name` and an optional valid `Unit`, each name a root member holding a number or an
/// array of at most 100 numbers); at most `maximumBytes` bytes.
struct EMFDocument {
    static let validUnits: Set<String> = [
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
        "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
        "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
        "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    ]

    let line: String
    let root: [String: Any]
    let timestamp: Int64
    let namespace: String
    let dimensionSets: [[String]]
    /// Metric name -> unit.
    let units: [String: String]
    /// Metric name -> values (one element for a single number).
    let values: [String: [Double]]

    var dimensions: [String: String] {
        Dictionary(uniqueKeysWithValues: Set(dimensionSets.joined()).map { ($0, root[$0] as! String) })
    }

    init(_ line: String, maximumBytes: Int = 1_048_576) throws {
        self.line = line
        #expect(!line.contains("\n"), "an EMF document is one line")
        #expect(line.utf8.count <= maximumBytes, "event of \(line.utf8.count) bytes exceeds \(maximumBytes)")
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        root = try #require(parsed as? [String: Any], "the root is a JSON object")
        let metadata = try #require(root["_aws"] as? [String: Any], "_aws is an object")
        #expect(Set(metadata.keys) == ["Timestamp", "CloudWatchMetrics"])
        let stamp = try #require(metadata["Timestamp"] as? NSNumber, "Timestamp is a number")
        #expect(stamp.doubleValue == stamp.doubleValue.rounded(), "Timestamp is whole milliseconds")
        timestamp = stamp.int64Value
        let directives = try #require(metadata["CloudWatchMetrics"] as? [[String: Any]], "CloudWatchMetrics is an array of objects")
        try #require(directives.count == 1, "the backend writes one directive per event")
        let directive = directives[0]
        #expect(Set(directive.keys) == ["Namespace", "Dimensions", "Metrics"])
        namespace = try #require(directive["Namespace"] as? String)
        #expect((1...255).contains(namespace.count))

        dimensionSets = try #require(directive["Dimensions"] as? [[String]], "Dimensions is an array of string arrays")
        #expect(!dimensionSets.isEmpty)
        for set in dimensionSets {
            #expect(set.count <= 30, "a dimension set has at most 30 keys, not \(set.count)")
            #expect(Set(set).count == set.count, "a dimension set repeats no key")
            for key in set {
                #expect(root[key] is String, "dimension \(key) is a string member of the root")
                #expect((1...255).contains(key.count))
            }
        }

        let definitions = try #require(directive["Metrics"] as? [[String: Any]], "Metrics is an array of objects")
        #expect((1...100).contains(definitions.count), "a directive has 1-100 metrics, not \(definitions.count)")
        var units: [String: String] = [:]
        var values: [String: [Double]] = [:]
        for definition in definitions {
            #expect(Set(definition.keys).isSubset(of: ["Name", "Unit"]))
            let name = try #require(definition["Name"] as? String)
            #expect((1...255).contains(name.count))
            #expect(units[name] == nil, "metric \(name) is defined once")
            let unit = definition["Unit"] as? String ?? "None"
            #expect(Self.validUnits.contains(unit), "unit \(unit) is a CloudWatch unit")
            units[name] = unit
            switch root[name] {
            case let number as NSNumber:
                values[name] = [number.doubleValue]
            case let array as [NSNumber]:
                #expect((1...100).contains(array.count), "a value array has 1-100 numbers, not \(array.count)")
                values[name] = array.map(\.doubleValue)
            default:
                Issue.record("metric \(name) has no number or number array at the root")
            }
        }
        self.units = units
        self.values = values
    }
}

/// Collects what an `EMFMetricsFactory` writes.
final class LineCollector: Sendable {
    private let storage = Mutex<[String]>([])

    var output: EMFOutput { .lines { line in self.storage.withLock { $0.append(line) } } }
    var lines: [String] { storage.withLock { $0 } }

    /// The documents written since the last call, parsed and checked.
    func take(maximumBytes: Int = 1_048_576) throws -> [EMFDocument] {
        let lines = storage.withLock { lines in
            defer { lines = [] }
            return lines
        }
        return try lines.map { try EMFDocument($0, maximumBytes: maximumBytes) }
    }
}

extension Array where Element == EMFDocument {
    /// Every value written for `name` across the documents whose dimensions include `dimensions`.
    func values(of name: String, where dimensions: [String: String] = [:]) -> [Double] {
        flatMap { document -> [Double] in
            guard dimensions.allSatisfy({ document.root[$0.key] as? String == $0.value }) else { return [] }
            return document.values[name] ?? []
        }
    }
}
