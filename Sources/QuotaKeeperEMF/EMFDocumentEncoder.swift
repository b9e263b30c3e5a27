/// A value read elsewhere and written as EMF as it is (no swift-metrics series, no aggregation), such as the
/// fleet gauges `quotakeeper export --format emf` reads from Redis.
public struct EMFMetricValue: Sendable {
    /// The metric name (`quotakeeper_budget_in_flight`).
    public var name: String
    /// swift-metrics style dimensions, mapped to EMF keys by ``EMFConfiguration/dimensions`` (a `budget`
    /// `MODEL@REGION` becomes `ModelId` and `Region`).
    public var dimensions: [(String, String)]
    public var unit: EMFUnit
    /// One number, or samples; non-finite values are dropped.
    public var values: [Double]

    public init(name: String, dimensions: [(String, String)], unit: EMFUnit = .none, values: [Double]) {
        self.name = name
        self.dimensions = dimensions
        self.unit = unit
        self.values = values
    }
}

/// Encodes values that are already aggregated into EMF documents, with the same dimension mapping, dimension
/// sets and limits (splitting) as ``EMFMetricsFactory``'s flushes.
public struct EMFDocumentEncoder: Sendable {
    private let encoder: EMFEventEncoder

    public init(configuration: EMFConfiguration = .init()) {
        encoder = EMFEventEncoder(configuration: configuration)
    }

    /// The EMF documents (one JSON object each, without a line break) for `metrics`, stamped
    /// `timestampMilliseconds` (ms since 1970). Metrics with the same EMF dimensions share a document.
    public func documents(for metrics: [EMFMetricValue], timestampMilliseconds: Int64) -> [String] {
        let snapshots = metrics.map { metric in
            MetricSnapshot(
                name: metric.name, dimensions: metric.dimensions.map { SeriesIdentity.Dimension(name: $0.0, value: $0.1) },
                unit: metric.unit, values: metric.values.filter(\.isFinite))
        }
        return encoder.encode(snapshots, timestampMilliseconds: timestampMilliseconds)
    }
}
