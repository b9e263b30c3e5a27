import CoreMetrics
import Foundation
import Testing

@testable import QuotaKeeperEMF

/// EMF's limits: 100 metrics per directive, 100 values per metric, 30 keys per dimension set, 1 MB per event.
@Suite struct EMFLimitsTests {
    func makeFactory(_ configure: (inout EMFConfiguration) -> Void = { _ in }) -> (EMFMetricsFactory, LineCollector) {
        var configuration = EMFConfiguration()
        configure(&configuration)
        let collector = LineCollector()
        return (EMFMetricsFactory(configuration: configuration, output: collector.output), collector)
    }

    @Test func moreThanOneHundredMetricsSplitIntoSeveralEvents() throws {
        let (emf, collector) = makeFactory()
        for index in 0..<250 {
            Counter(label: "metric_\(index)", dimensions: [("budget", "m@r")], factory: emf).increment(by: index + 1)
        }
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.map(\.values.count) == [100, 100, 50])
        var seen: [String: [Double]] = [:]
        for document in documents {
            #expect(document.dimensions == ["ModelId": "m", "Region": "r"])
            seen.merge(document.values) { _, _ in Issue.record("a metric was written twice"); return [] }
        }
        #expect(seen.count == 250)
        for index in 0..<250 { #expect(seen["metric_\(index)"] == [Double(index + 1)]) }
    }

    @Test func moreThanOneHundredSamplesSplitIntoSeveralEvents() throws {
        let (emf, collector) = makeFactory()
        let latency = Recorder(label: "latency", dimensions: [], factory: emf)
        let tokens = Recorder(label: "tokens", dimensions: [], factory: emf)
        for value in 1...250 { latency.record(value) }
        for value in 1...30 { tokens.record(value) }
        Counter(label: "calls", dimensions: [], factory: emf).increment(by: 250)
        try emf.flush()
        let documents = try collector.take()
        #expect(documents.count == 3)
        #expect(documents.map { $0.values["latency"]?.count } == [100, 100, 50])
        #expect(documents.values(of: "latency").sorted() == (1...250).map(Double.init))
        #expect(documents.values(of: "tokens").sorted() == (1...30).map(Double.init))
        #expect(documents.values(of: "calls") == [250], "a single number is written once")
    }

    @Test func eventsOverTheByteLimitAreHalvedUntilTheyFit() throws {
        let limit = 8_000
        let (emf, collector) = makeFactory { $0.limits.eventBytes = limit }
        let longName = String(repeating: "x", count: 200)
        for index in 0..<60 {
            Counter(label: "\(longName)_\(index)", dimensions: [("app", "checkout")], factory: emf).increment(by: index)
        }
        let samples = Recorder(label: "samples", dimensions: [("app", "checkout")], factory: emf)
        for value in 0..<100 { samples.record(Double(value) + 0.123456789) }
        try emf.flush()
        let lines = collector.lines
        let documents = try collector.take(maximumBytes: limit)
        #expect(lines.count > 2)
        #expect(lines.allSatisfy { $0.utf8.count <= limit })
        for index in 0..<60 { #expect(documents.values(of: "\(longName)_\(index)") == [Double(index)]) }
        #expect(documents.values(of: "samples").count == 100)
    }

    @Test func theFullestPossibleEventStaysUnderOneMegabyte() throws {
        // 100 metrics x 100 long fractional samples, 30 dimension values of 1024 characters and more.
        let (emf, collector) = makeFactory()
        let dimensions = (0..<30).map { ("dimension_\($0)", String(repeating: "v", count: 5_000)) }
        for index in 0..<100 {
            let recorder = Recorder(label: String(repeating: "n", count: 240) + "\(index)", dimensions: dimensions, factory: emf)
            for _ in 0..<100 { recorder.record(-Double.random(in: 1e-300...1e-299)) }
        }
        try emf.flush()
        let documents = try collector.take()
        #expect(!documents.isEmpty)
        #expect(documents.reduce(0) { $0 + $1.values.values.reduce(0) { $0 + $1.count } } == 10_000)
        #expect(documents.allSatisfy { $0.dimensions.values.allSatisfy { $0.count == 1024 } }, "dimension values cut to 1024 characters")
    }

    @Test func dimensionSetsHoldAtMostThirtyKeys() throws {
        let (emf, collector) = makeFactory { $0.dimensions.fixed = ["App": "checkout"] }
        let dimensions = (0..<35).map { (String(format: "d%02d", $0), "value\($0)") }
        Counter(label: "wide", dimensions: dimensions, factory: emf).increment()
        try emf.flush()
        let document = try #require(try collector.take().first)
        #expect(document.dimensionSets[0].count == 30)
        #expect(document.dimensionSets[0] == (0..<30).map { String(format: "D%02d", $0) })
        // The keys beyond the limit are still in the event, as plain members for Logs Insights.
        #expect(document.root["D34"] as? String == "value34")
        #expect(document.root["App"] as? String == "checkout")
        #expect(document.values["wide"] == [1])
    }

    @Test func rollupsAreConfigurableAndNeverRepeated() {
        var configuration = EMFConfiguration()
        configuration.dimensions.rollups = [["App"], ["App"], ["Kind", "App"], ["Unknown"]]
        let encoder = EMFEventEncoder(configuration: configuration)
        #expect(encoder.dimensionSets(for: ["ModelId", "Region", "Kind", "App"]) == [
            ["ModelId", "Region", "Kind", "App"], ["ModelId", "Region", "Kind"], ["ModelId", "Region"],
        ])
        configuration.dimensions.rollups = [["ModelId", "Region", "Kind", "App"]]
        #expect(EMFEventEncoder(configuration: configuration).dimensionSets(for: ["ModelId", "Region", "Kind", "App"]) == [
            ["ModelId", "Region", "Kind", "App"], [],
        ], "an empty set aggregates over every dimension")
    }

    @Test func reservoirKeepsMemoryBoundedWithAUniformSample() throws {
        let (emf, collector) = makeFactory { $0.limits.samplesPerSeries = 500 }
        let recorder = Recorder(label: "bounded", dimensions: [], factory: emf)
        for value in 0..<20_000 { recorder.record(value) }
        try emf.flush()
        let kept = try collector.take().values(of: "bounded")
        #expect(kept.count == 500)
        #expect(Set(kept).count == 500, "each sample kept at most once")
        // Uniform: the kept samples are spread over the whole range, not the first 500.
        #expect(kept.contains { $0 >= 10_000 })
    }
}
