import CoreMetrics
import Foundation
import Testing

@testable import QuotaKeeperEMF

/// Flush boundaries under concurrent writers, and the background flush loop.
@Suite struct EMFFlushTests {
    @Test func noUpdateIsLostOrCountedTwiceAcrossConcurrentFlushes() async throws {
        let collector = LineCollector()
        var configuration = EMFConfiguration()
        configuration.limits.samplesPerSeries = 100_000  // keep every sample, to account for each
        let emf = EMFMetricsFactory(configuration: configuration, output: collector.output)
        let writers = 8, perWriter = 5_000

        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    for index in 0..<perWriter {
                        Counter(label: "calls", dimensions: [("budget", "m@r")], factory: emf).increment()
                        Recorder(label: "sizes", dimensions: [("budget", "m@r")], factory: emf).record(writer * perWriter + index)
                        if index % 500 == 0 { await Task.yield() }
                    }
                }
            }
            group.addTask {
                for _ in 0..<200 {
                    try? emf.flush()
                    await Task.yield()
                }
            }
        }
        try emf.flush()

        let documents = try collector.take()
        #expect(documents.values(of: "calls").reduce(0, +) == Double(writers * perWriter))
        let sizes = documents.values(of: "sizes")
        #expect(sizes.count == writers * perWriter)
        #expect(Set(sizes).count == writers * perWriter, "every sample exactly once")
    }

    @Test func backgroundLoopFlushesEveryIntervalAndStopsCleanly() async throws {
        let collector = LineCollector()
        var configuration = EMFConfiguration()
        configuration.flushInterval = .milliseconds(20)
        let emf = EMFMetricsFactory(configuration: configuration, output: collector.output)
        let counter = Counter(label: "ticks", dimensions: [], factory: emf)

        emf.startFlushing()
        emf.startFlushing()  // already running: no second loop
        counter.increment(by: 5)
        let deadline = ContinuousClock.now + .seconds(10)
        while collector.lines.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        var documents = try collector.take()
        #expect(documents.values(of: "ticks") == [5], "the loop flushed without an explicit flush()")

        counter.increment(by: 2)
        await emf.stopFlushing()
        documents = try collector.take()
        #expect(documents.values(of: "ticks") == [2], "stopping writes what was left")

        counter.increment(by: 1)
        try await Task.sleep(for: .milliseconds(100))
        #expect(collector.lines.isEmpty, "no flush after stop")
        await emf.stopFlushing()  // stopping twice is harmless
        try emf.flush()
        #expect(try collector.take().values(of: "ticks") == [1])
    }

    @Test func stoppingEndsTheLoopPromptlyEvenWithALongInterval() async throws {
        var configuration = EMFConfiguration()
        configuration.flushInterval = .seconds(3_600)
        let collector = LineCollector()
        let emf = EMFMetricsFactory(configuration: configuration, output: collector.output)
        emf.startFlushing()
        Counter(label: "once", dimensions: [], factory: emf).increment()
        let started = ContinuousClock.now
        await emf.stopFlushing()
        #expect(ContinuousClock.now - started < .seconds(30), "cancellation ends the sleep")
        #expect(try collector.take().values(of: "once") == [1])
    }
}
