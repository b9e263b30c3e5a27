/// One metric ready to be written: its name, swift-metrics dimensions, unit and values for one flush.
struct MetricSnapshot: Sendable, Equatable {
    var name: String
    var dimensions: [SeriesIdentity.Dimension]
    var unit: EMFUnit
    var values: [Double]
}

/// Turns a flush's metrics into EMF JSON documents (one per line), within EMF's limits.
///
/// Metrics with the same EMF dimension values share events: each event holds one `MetricDirective` with the
/// dimension sets (the full set, then the rollups) and at most ``EMFConfiguration/Limits/metricsPerDirective``
/// metrics, each a number or an array of at most ``EMFConfiguration/Limits/valuesPerMetric`` numbers. More
/// metrics or samples go into further events with the same dimensions; an event over
/// ``EMFConfiguration/Limits/eventBytes`` is halved until it fits.
struct EMFEventEncoder: Sendable {
    let configuration: EMFConfiguration

    /// The documents for `metrics`, stamped `timestampMilliseconds` (milliseconds since 1970).
    func encode(_ metrics: [MetricSnapshot], timestampMilliseconds: Int64) -> [String] {
        // Series that end up with the same EMF dimensions and name (an excluded dimension was all that told
        // them apart) are written as one metric with all their values: CloudWatch's Sum stays exact.
        var groups: [[EMFDimension]: [String: MetricSnapshot]] = [:]
        for metric in metrics where !metric.values.isEmpty {
            let dimensions = emfDimensions(of: metric.dimensions)
            if var existing = groups[dimensions]?[metric.name] {
                existing.values += metric.values
                groups[dimensions]![metric.name] = existing
            } else {
                groups[dimensions, default: [:]][metric.name] = metric
            }
        }
        var events: [String] = []
        for dimensions in groups.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let sets = dimensionSets(for: dimensions.map(\.key))
            let members = groups[dimensions]!.values.sorted { $0.name < $1.name }
            for chunk in valueChunks(of: members) {
                var start = 0
                while start < chunk.count {
                    let batch = Array(chunk[start..<min(start + max(1, configuration.limits.metricsPerDirective), chunk.count)])
                    start += batch.count
                    events += fittingEvents(batch, dimensions: dimensions, sets: sets, timestamp: timestampMilliseconds)
                }
            }
        }
        return events
    }

    // MARK: Dimensions

    /// The EMF dimensions of a series: derived (even from an excluded one), mapped, split (`MODEL@REGION`),
    /// then the fixed ones.
    func emfDimensions(of dimensions: [SeriesIdentity.Dimension]) -> [EMFDimension] {
        let settings = configuration.dimensions
        var result: [EMFDimension] = []
        func add(_ key: String, _ value: String) {
            guard !result.contains(where: { $0.key == key }) else { return }
            result.append(EMFDimension(key: key, value: String(value.prefix(configuration.limits.dimensionValueCharacters))))
        }
        for dimension in dimensions {
            for derived in settings.derived where derived.source == dimension.name {
                if let value = derived.values[dimension.value] ?? derived.otherwise { add(derived.key, value) }
            }
            guard !settings.excluded.contains(dimension.name) else { continue }
            if let split = settings.splits[dimension.name], let cut = dimension.value.lastIndex(of: split.separator),
               cut != dimension.value.startIndex, dimension.value.index(after: cut) != dimension.value.endIndex {
                add(split.keys.first, String(dimension.value[..<cut]))
                add(split.keys.second, String(dimension.value[dimension.value.index(after: cut)...]))
            } else {
                add(settings.keys[dimension.name] ?? Self.upperCamelCase(dimension.name), dimension.value)
            }
        }
        for (key, value) in settings.fixed.sorted(by: { $0.key < $1.key }) {
            add(key, value)
        }
        return result
    }

    /// The full set (cut to the key limit), then each rollup that differs from the sets before it.
    func dimensionSets(for keys: [String]) -> [[String]] {
        let limit = configuration.limits.dimensionKeysPerSet
        var sets = [Array(keys.prefix(limit))]
        for rollup in configuration.dimensions.rollups {
            let reduced = Array(keys.filter { !rollup.contains($0) }.prefix(limit))
            if !sets.contains(reduced) { sets.append(reduced) }
        }
        return sets
    }

    /// `retry_kind` -> `RetryKind`.
    static func upperCamelCase(_ name: String) -> String {
        name.split(whereSeparator: { $0 == "_" || $0 == "-" || $0 == "." })
            .map { $0.prefix(1).uppercased() + $0.dropFirst() }
            .joined()
    }

    // MARK: Splitting

    /// Splits sample arrays longer than the per-metric limit: chunk `i` holds the `i`-th slice of every metric
    /// that has one (single numbers are all in chunk 0).
    private func valueChunks(of metrics: [MetricSnapshot]) -> [[MetricSnapshot]] {
        let size = max(1, configuration.limits.valuesPerMetric)
        var chunks: [[MetricSnapshot]] = []
        for metric in metrics {
            var index = 0
            var start = 0
            while start < metric.values.count {
                var slice = metric
                slice.values = Array(metric.values[start..<min(start + size, metric.values.count)])
                if chunks.count == index { chunks.append([]) }
                chunks[index].append(slice)
                index += 1
                start += size
            }
        }
        return chunks
    }

    /// The events for `metrics`, halving (first the metrics, then a lone metric's values) until each fits.
    private func fittingEvents(_ metrics: [MetricSnapshot], dimensions: [EMFDimension], sets: [[String]], timestamp: Int64) -> [String] {
        let event = render(metrics, dimensions: dimensions, sets: sets, timestamp: timestamp)
        guard event.utf8.count > configuration.limits.eventBytes else { return [event] }
        if metrics.count > 1 {
            let half = metrics.count / 2
            return fittingEvents(Array(metrics[..<half]), dimensions: dimensions, sets: sets, timestamp: timestamp)
                + fittingEvents(Array(metrics[half...]), dimensions: dimensions, sets: sets, timestamp: timestamp)
        }
        let metric = metrics[0]
        guard metric.values.count > 1 else { return [event] }  // one number with its dimensions: cannot shrink further
        var first = metric, second = metric
        first.values = Array(metric.values[..<(metric.values.count / 2)])
        second.values = Array(metric.values[(metric.values.count / 2)...])
        return fittingEvents([first], dimensions: dimensions, sets: sets, timestamp: timestamp)
            + fittingEvents([second], dimensions: dimensions, sets: sets, timestamp: timestamp)
    }

    // MARK: JSON

    /// One EMF document on one line.
    private func render(_ metrics: [MetricSnapshot], dimensions: [EMFDimension], sets: [[String]], timestamp: Int64) -> String {
        var json = #"{"_aws":{"Timestamp":"# + String(timestamp) + #","CloudWatchMetrics":[{"Namespace":"#
        json += JSONString.quoted(configuration.namespace) + #","Dimensions":["#
        json += sets.map { "[" + $0.map(JSONString.quoted).joined(separator: ",") + "]" }.joined(separator: ",")
        json += #"],"Metrics":["#
        json += metrics.map { #"{"Name":"# + JSONString.quoted($0.name) + #","Unit":"# + JSONString.quoted($0.unit.rawValue) + "}" }
            .joined(separator: ",")
        json += "]}]}"
        for dimension in dimensions {
            json += "," + JSONString.quoted(dimension.key) + ":" + JSONString.quoted(dimension.value)
        }
        for metric in metrics {
            json += "," + JSONString.quoted(metric.name) + ":"
            json += metric.values.count == 1
                ? Self.number(metric.values[0])
                : "[" + metric.values.map(Self.number).joined(separator: ",") + "]"
        }
        return json + "}"
    }

    /// A JSON number: integers without a fraction, others in Swift's shortest round-trip form.
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// An EMF dimension: key and value, written as a root member of the event.
struct EMFDimension: Hashable, Sendable, Comparable {
    var key: String
    var value: String

    static func < (lhs: EMFDimension, rhs: EMFDimension) -> Bool {
        (lhs.key, lhs.value) < (rhs.key, rhs.value)
    }
}

/// JSON string literals, shared by the EMF encoder and the `quotakeeper` CLI's JSON output.
public enum JSONString {
    /// `string` as a JSON string literal, quotes included (RFC 8259 escaping: quote, backslash and control
    /// characters; everything else as it is).
    public static func quoted(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
