import Foundation

/// How the CloudWatch Embedded Metric Format backend names, groups, limits and flushes metrics.
///
/// ```swift
/// var configuration = EMFConfiguration()
/// configuration.namespace = "QuotaKeeper"
/// configuration.dimensions.fixed = ["App": "checkout"]
/// let emf = EMFMetricsFactory(configuration: configuration)
/// MetricsSystem.bootstrap(emf)
/// emf.startFlushing()
/// ```
public struct EMFConfiguration: Sendable {
    /// The CloudWatch namespace of every metric (1-255 characters).
    public var namespace = "QuotaKeeper"
    /// How often the background loop (``EMFMetricsFactory/startFlushing()``) writes what was aggregated.
    public var flushInterval: Duration = .seconds(60)
    /// How swift-metrics dimensions become EMF dimension keys and dimension sets.
    public var dimensions = Dimensions()
    /// EMF's limits; every event written stays within them.
    public var limits = Limits()
    /// CloudWatch units per metric kind and per label.
    public var units = Units()

    public init() {}

    /// How swift-metrics dimensions (`("budget", "MODEL@REGION")`) map to EMF dimensions (`ModelId`, `Region`).
    public struct Dimensions: Sendable {
        /// EMF dimension key for a swift-metrics dimension name. Names not listed become UpperCamelCase
        /// (`retry_kind` -> `RetryKind`).
        public var keys: [String: String] = [
            "budget": "Budget", "kind": "Kind", "outcome": "Outcome", "app": "App", "limit": "Limit",
            "result": "Result", "from": "FromBudget", "to": "ToBudget",
        ]
        /// Dimensions whose value is split in two at the last separator, each half under its own key.
        ///
        /// By default a QuotaKeeper budget `anthropic.claude-3-haiku-20240307-v1:0@us-east-1` becomes
        /// `ModelId` and `Region`; a value without the separator keeps the key from ``keys``.
        public var splits: [String: Split] = [
            "budget": Split(separator: "@", keys: ("ModelId", "Region")),
            "from": Split(separator: "@", keys: ("FromModelId", "FromRegion")),
            "to": Split(separator: "@", keys: ("ToModelId", "ToRegion")),
        ]
        /// Extra dimensions computed from another one's value; by default `HttpStatus` from a Bedrock error
        /// `kind` (`throttled-tokens` -> `429`), so dashboards and alarms can split 429 from 503 directly.
        public var derived: [Derived] = [.bedrockHTTPStatus]
        /// swift-metrics dimension names that are not turned into EMF dimensions (not written at all).
        public var excluded: Set<String> = []
        /// Dimensions added to every metric, e.g. `["App": "checkout"]` (this process's app name).
        public var fixed: [String: String] = [:]
        /// Extra, coarser dimension sets: each removes its keys from a metric's full dimension set.
        ///
        /// The defaults publish every metric with all its dimensions; without `App` (the fleet, per model and
        /// Region); without `App`, `ModelId`, `Region` and `Budget` (the fleet, e.g. per `Kind` or `Outcome`); and, for
        /// metrics with a `Kind`, without it too (per `HttpStatus`, with and without model and Region). A rollup
        /// that leaves the full set unchanged, or repeats another, is not written twice. Every dimension set is
        /// a separate CloudWatch metric (and bill).
        public var rollups: [Set<String>] = [
            ["App"], ["App", "ModelId", "Region", "Budget"], ["App", "Kind"], ["App", "ModelId", "Region", "Budget", "Kind"],
        ]

        public init() {}

        /// A dimension whose value is looked up from another dimension's value.
        public struct Derived: Sendable {
            /// The swift-metrics dimension name read (e.g. `kind`).
            public var source: String
            /// The EMF key written (e.g. `HttpStatus`).
            public var key: String
            /// Source value -> derived value.
            public var values: [String: String]
            /// Written for a source value not in `values`; `nil` writes nothing.
            public var otherwise: String?

            public init(source: String, key: String, values: [String: String], otherwise: String? = nil) {
                self.source = source
                self.key = key
                self.values = values
                self.otherwise = otherwise
            }

            /// The HTTP status of each `BedrockErrorKind` raw value; `connection-failed` (no HTTP answer) and
            /// `unknown` become `none`.
            public static let bedrockHTTPStatus = Derived(
                source: "kind", key: "HttpStatus",
                values: [
                    "throttled-requests": "429", "throttled-tokens": "429", "throttled-daily": "429",
                    "throttled-unknown": "429", "model-overloaded": "429", "model-not-ready": "429",
                    "service-unavailable": "503", "too-many-connections": "503", "internal-server": "500",
                    "timeout": "408", "model-error": "424", "validation": "400", "quota-exceeded": "400",
                    "access-denied": "403", "not-found": "404",
                ],
                otherwise: "none")
        }

        /// A dimension value made of two parts, such as `MODEL@REGION`.
        public struct Split: Sendable {
            public var separator: Character
            public var keys: (first: String, second: String)

            public init(separator: Character, keys: (first: String, second: String)) {
                self.separator = separator
                self.keys = keys
            }
        }
    }

    /// EMF's limits (CloudWatch Embedded Metric Format specification).
    public struct Limits: Sendable {
        /// Metric definitions per `MetricDirective` (EMF: at most 100).
        public var metricsPerDirective = 100
        /// Dimension keys per dimension set (EMF: at most 30). Keys beyond stay in the event as plain members.
        public var dimensionKeysPerSet = 30
        /// Numbers per metric value array (EMF: at most 100); more samples go into further events.
        public var valuesPerMetric = 100
        /// Bytes per event (CloudWatch Logs: 1 MB); a larger event is split.
        public var eventBytes = 1_048_576
        /// Characters per dimension value (CloudWatch: 1024); longer values are cut.
        public var dimensionValueCharacters = 1024
        /// Samples a recorder or timer keeps per flush interval; beyond it a uniform random sample of this
        /// size is kept (reservoir sampling), so memory stays bounded under any load.
        public var samplesPerSeries = 10_000

        public init() {}
    }

    /// CloudWatch units.
    public struct Units: Sendable {
        /// Counters (`Counter`, `FloatingPointCounter`).
        public var counter: EMFUnit = .count
        /// Timers, unless a timer asked for another unit with `preferDisplayUnit`.
        public var timer: EMFUnit = .seconds
        /// Recorders, gauges and meters.
        public var recorder: EMFUnit = .none
        /// Per-label overrides, e.g. `["quotakeeper_effective_ceiling": .none]`. Timers given a unit here
        /// must be given a time unit (seconds, milliseconds or microseconds).
        public var byLabel: [String: EMFUnit] = [:]

        public init() {}
    }
}

/// A CloudWatch metric unit, as written in a `MetricDefinition`'s `Unit`.
public struct EMFUnit: RawRepresentable, Sendable, Hashable {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let count = EMFUnit(rawValue: "Count")
    public static let seconds = EMFUnit(rawValue: "Seconds")
    public static let milliseconds = EMFUnit(rawValue: "Milliseconds")
    public static let microseconds = EMFUnit(rawValue: "Microseconds")
    public static let percent = EMFUnit(rawValue: "Percent")
    public static let bytes = EMFUnit(rawValue: "Bytes")
    public static let countPerSecond = EMFUnit(rawValue: "Count/Second")
    public static let none = EMFUnit(rawValue: "None")

    /// Nanoseconds per unit for the time units, `nil` for the others.
    var nanosecondsPerUnit: Double? {
        switch self {
        case .seconds: 1e9
        case .milliseconds: 1e6
        case .microseconds: 1e3
        default: nil
        }
    }
}
