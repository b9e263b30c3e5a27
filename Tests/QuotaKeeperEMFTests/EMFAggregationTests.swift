import CoreMetrics
import Foundation
import Testing

@testable import QuotaKeeperEMF

/// Aggregation per metric kind, dimension mapping and the documents' shape.
@Suite struct EMFAggregationTests {
    static let haiku = "anthropic.claude-3-haiku-20240307-v1:0@us-east-1"
    static let fixedTime = Date(timeIntervalSince1970: 1_764_000_000.123)

    func makeFactory(_ configure: (inout EMFConfiguration) -> Void = { _ in }) -> (EMFMetricsFactory, LineCollector) {
        var configuration = EMFConfiguration()
        configure(&configuration)
        let collector = LineCollector()
        return (EMFMetricsFactory(configuration: configuration, output: collector.output, now: { Self.fixedTime }), collector)
    }

    @Test func countersSumIncrementsOfEveryHandleOfASeries() throws {
        let (emf, collector) = makeFactory()
        let dimensions = [("budget", Self.haiku), ("outcome", "served")]
        // The call path creates a new Counter per increment: all of them feed one series.
        Counter(label: "quotakeeper_calls_total", dimensions: dimensions, factory: emf).increment(by: 3)
        Counter(label: "quotakeeper_calls_total", dimensions: dimensions, factory: emf).increment(by: 4)
        Counter(label: "quotakeeper_calls_total", dimensions: [("budget", Self.haiku), ("outcome", "served_by_fallback")], factory: emf).increment()
        try emf.flush()

        let documents = try collector.take()
        #expect(documents.count == 2)
        #expect(documents.values(of: "quotakeeper_calls_total", where: ["Outcome": "served"]) == [7])
        #expect(documents.values(of: "quotakeeper_calls_total", where: ["Outcome": "served_by_fallback"]) == [1])
        #expect(documents.allSatisfy { $0.units["quotakeeper_calls_total"] == "Count" })
        #expect(documents.allSatisfy { $0.timestamp == 1_764_000_000_123 && $0.namespace == "QuotaKeeper" })

        // A counter reports what happened in the interval: nothing new, nothing written.
        try emf.flush()
        #expect(try collector.take().isEmpty)
        Counter(label: "quotakeeper_calls_total", dimensions: dimensions, factory: emf).increment(by: 2)
        try emf.flush()
        #expect(try collector.take().values(of: "quotakeeper_calls_total") == [2])
    }

    @Test func floatingPointCountersKeepFractions() throws {
        let (emf, collector) = makeFactory()
        let counter = FloatingPointCounter(label: "tokens_charged", dimensions: [], factory: emf)
        counter.increment(by: 0.5)
        counter.increment(by: 0.25)
        counter.increment(by: Double.nan)  // not representable in CloudWatch: ignored
        try emf.flush()
        #expect(try collector.take().values(of: "tokens_charged") == [0.75])
    }

    @Test func recordersWriteEverySampleAsAValueArray() throws {
        let (emf, collector) = makeFactory { $0.units.byLabel["request_tokens"] = .count }
        let recorder = Recorder(label: "request_tokens", dimensions: [("budget", Self.haiku)], factory: emf)
        for value in [1_200, 80, 80, 4_000] { recorder.record(value) }
        recorder.record(Double.infinity)
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.values(of: "request_tokens").sorted() == [80, 80, 1_200, 4_000])
        #expect(documents[0].units["request_tokens"] == "Count")
        try emf.flush()
        #expect(try collector.take().isEmpty)
    }

    @Test func gaugesAndMetersWriteTheirCurrentValueAtEveryFlush() throws {
        let (emf, collector) = makeFactory()
        let gauge = Gauge(label: "quotakeeper_effective_ceiling", dimensions: [("budget", Self.haiku)], factory: emf)
        gauge.record(0.5)
        gauge.record(0.7)
        let meter = Meter(label: "in_flight", dimensions: [], factory: emf)
        meter.set(10)
        meter.increment(by: 2)
        meter.decrement(by: 5)
        try emf.flush()
        var documents = try collector.take()
        #expect(documents.values(of: "quotakeeper_effective_ceiling") == [0.7])
        #expect(documents.values(of: "in_flight") == [7])
        #expect(documents.allSatisfy { $0.units.values.allSatisfy { $0 == "None" } })

        try emf.flush()
        documents = try collector.take()
        #expect(documents.values(of: "quotakeeper_effective_ceiling") == [0.7])
        #expect(documents.values(of: "in_flight") == [7])
    }

    @Test func timersConvertToTheConfiguredOrPreferredUnit() throws {
        let (emf, collector) = makeFactory()
        Timer(label: "quotakeeper_admission_wait_seconds", dimensions: [], factory: emf).recordMilliseconds(250)
        Timer(label: "quotakeeper_admission_wait_seconds", dimensions: [], factory: emf).recordNanoseconds(1_500_000_000)
        Timer(label: "render_time", dimensions: [], preferredDisplayUnit: .milliseconds, factory: emf).recordMicroseconds(2_500)
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.values(of: "quotakeeper_admission_wait_seconds").sorted() == [0.25, 1.5])
        #expect(documents[0].units["quotakeeper_admission_wait_seconds"] == "Seconds")
        #expect(documents.values(of: "render_time") == [2.5])
        #expect(documents[0].units["render_time"] == "Milliseconds")
    }

    @Test func budgetsSplitIntoModelAndRegionWithRollupDimensionSets() throws {
        let (emf, collector) = makeFactory { $0.dimensions.fixed = ["App": "checkout"] }
        Counter(label: "quotakeeper_bedrock_errors_total", dimensions: [("budget", Self.haiku), ("kind", "throttled-tokens")], factory: emf).increment()
        Counter(label: "quotakeeper_fallbacks_total", dimensions: [("from", Self.haiku), ("to", "us.anthropic.claude-3-haiku-20240307-v1:0@us-west-2")], factory: emf).increment()
        Counter(label: "quotakeeper_calls_total", dimensions: [("budget", "none"), ("outcome", "failed_invalidRequest")], factory: emf).increment()
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.count == 3)

        let errors = try #require(documents.first { $0.values["quotakeeper_bedrock_errors_total"] != nil })
        #expect(errors.dimensions == [
            "ModelId": "anthropic.claude-3-haiku-20240307-v1:0", "Region": "us-east-1", "HttpStatus": "429",
            "Kind": "throttled-tokens", "App": "checkout",
        ])
        #expect(errors.dimensionSets == [
            ["ModelId", "Region", "HttpStatus", "Kind", "App"], ["ModelId", "Region", "HttpStatus", "Kind"], ["HttpStatus", "Kind"],
            ["ModelId", "Region", "HttpStatus"], ["HttpStatus"],
        ])

        let fallbacks = try #require(documents.first { $0.values["quotakeeper_fallbacks_total"] != nil })
        #expect(fallbacks.root["ToModelId"] as? String == "us.anthropic.claude-3-haiku-20240307-v1:0")
        #expect(fallbacks.root["ToRegion"] as? String == "us-west-2")
        #expect(fallbacks.dimensionSets == [["FromModelId", "FromRegion", "ToModelId", "ToRegion", "App"], ["FromModelId", "FromRegion", "ToModelId", "ToRegion"]])

        // A value that is not MODEL@REGION keeps the plain key.
        let failed = try #require(documents.first { $0.values["quotakeeper_calls_total"] != nil })
        #expect(failed.dimensions == ["Budget": "none", "Outcome": "failed_invalidRequest", "App": "checkout"])
        #expect(failed.dimensionSets.contains(["Outcome"]), "fleet-wide outcome counts include calls without a budget")
    }

    @Test func derivedDimensionsFollowTheirSourceEvenWhenItIsExcluded() throws {
        let (emf, collector) = makeFactory { $0.dimensions.excluded = ["kind"] }
        for kind in ["service-unavailable", "too-many-connections", "throttled-requests", "something-new"] {
            Counter(label: "quotakeeper_bedrock_errors_total", dimensions: [("budget", Self.haiku), ("kind", kind)], factory: emf).increment()
        }
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.count == 3)
        #expect(documents.values(of: "quotakeeper_bedrock_errors_total", where: ["HttpStatus": "503"]) == [1, 1])
        #expect(documents.values(of: "quotakeeper_bedrock_errors_total", where: ["HttpStatus": "429"]) == [1])
        #expect(documents.values(of: "quotakeeper_bedrock_errors_total", where: ["HttpStatus": "none"]) == [1])
        #expect(documents.allSatisfy { $0.root["Kind"] == nil })
    }

    @Test func unmappedDimensionNamesBecomeUpperCamelCaseAndExcludedOnesMerge() throws {
        let (emf, collector) = makeFactory { $0.dimensions.excluded = ["request_id"] }
        Counter(label: "events", dimensions: [("retry_kind", "jitter"), ("request_id", "a")], factory: emf).increment(by: 2)
        Counter(label: "events", dimensions: [("retry_kind", "jitter"), ("request_id", "b")], factory: emf).increment(by: 5)
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.count == 1)
        #expect(documents[0].dimensions == ["RetryKind": "jitter"])
        // Two series now indistinguishable: both values kept, so CloudWatch's Sum is 7.
        #expect(documents.values(of: "events").sorted() == [2, 5])
    }

    @Test func destroyedSeriesAreWrittenOnceMore() throws {
        let (emf, collector) = makeFactory()
        let counter = Counter(label: "short_lived", dimensions: [], factory: emf)
        counter.increment(by: 9)
        counter.destroy()
        try emf.flush()
        #expect(try collector.take().values(of: "short_lived") == [9])
        try emf.flush()
        #expect(try collector.take().isEmpty)
    }

    @Test func stringsAreEscapedAndRoundTrip() throws {
        let (emf, collector) = makeFactory { $0.namespace = "Quota\"Keeper" }
        let awkward = "line\nbreak \"quoted\" back\\slash \u{01} ü"
        Counter(label: "odd", dimensions: [("app", awkward)], factory: emf).increment()
        try emf.flush()
        let document = try #require(try collector.take().first)
        #expect(document.namespace == "Quota\"Keeper")
        #expect(document.root["App"] as? String == awkward)
    }

    @Test func writeFailuresAreReportedAndCounted() throws {
        struct Refused: Error {}
        let emf = EMFMetricsFactory(output: .lines { _ in throw Refused() })
        Counter(label: "a", dimensions: [("kind", "x")], factory: emf).increment()
        Counter(label: "a", dimensions: [("kind", "y")], factory: emf).increment()
        #expect { try emf.flush() } throws: { ($0 as? EMFError)?.code == .writeFailed }
        #expect(emf.failedWrites == 2)
    }

    @Test func libraryCodeReachesTheFactoryThroughSwiftMetrics() throws {
        let (emf, collector) = makeFactory()
        // The library creates metrics without a factory argument, as after MetricsSystem.bootstrap(emf).
        withMetricsFactory(emf) {
            Counter(label: "quotakeeper_retries_total", dimensions: [("budget", Self.haiku), ("kind", "service-unavailable")]).increment()
        }
        try emf.flush()
        #expect(try collector.take().values(of: "quotakeeper_retries_total", where: ["Kind": "service-unavailable"]) == [1])
    }
}
