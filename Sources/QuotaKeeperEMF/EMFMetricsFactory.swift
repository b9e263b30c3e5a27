import CoreMetrics
import Foundation
import Synchronization

/// A swift-metrics backend that aggregates over a flush interval and writes CloudWatch Embedded Metric Format
/// (EMF) documents, one JSON object per line, which CloudWatch Logs turns into metrics with no AWS SDK.
///
/// - Counters (`Counter`, `FloatingPointCounter`): the sum of increments in the interval (unit `Count`).
/// - Recorders: every sample of the interval as a value array (CloudWatch computes count, sum, min, max and
///   percentiles from it).
/// - Timers: like recorders, converted to ``EMFConfiguration/Units/timer`` (seconds by default).
/// - Gauges and meters: the current value, repeated at every flush.
///
/// Series that recorded nothing in an interval are not written. Write to standard output where a log agent
/// (Lambda, ECS awslogs/FireLens, the CloudWatch agent) ships it to CloudWatch Logs.
///
/// ```swift
/// let emf = EMFMetricsFactory(configuration: configuration)
/// MetricsSystem.bootstrap(emf)
/// emf.startFlushing()
/// ...
/// await emf.stopFlushing()  // writes what is left
/// ```
public final class EMFMetricsFactory: MetricsFactory, Sendable {
    public let configuration: EMFConfiguration
    private let output: EMFOutput
    private let now: @Sendable () -> Date
    private let encoder: EMFEventEncoder
    private let registry = Mutex(Registry())
    /// Serialises flushes, so the lines of one flush are never interleaved with another's.
    private let flushLock = Mutex(())
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// Flushes started by the background loop run here: writing may block, which the cooperative pool must not.
    private let writeQueue = DispatchQueue(label: "quotakeeper.emf.flush")
    private let writeFailures = Atomic<Int>(0)

    private struct Registry {
        var live: [SeriesIdentity: any AggregatingSeries] = [:]
        /// Destroyed series, written once more at the next flush so nothing recorded is lost.
        var retired: [any AggregatingSeries] = []
    }

    /// Creates the backend.
    /// - Parameters:
    ///   - configuration: namespace, dimension mapping, limits, units and flush interval.
    ///   - output: where the EMF lines go (standard output by default).
    ///   - now: the clock stamped into each document's `Timestamp`.
    public init(configuration: EMFConfiguration = .init(), output: EMFOutput = .standardOutput, now: @escaping @Sendable () -> Date = { Date() }) {
        self.configuration = configuration
        self.output = output
        self.now = now
        self.encoder = EMFEventEncoder(configuration: configuration)
    }

    /// Lines the output failed to take since this factory was created (the background loop cannot throw).
    public var failedWrites: Int { writeFailures.load(ordering: .relaxed) }

    // MARK: Flushing

    /// Writes everything aggregated since the last flush and starts a new interval.
    ///
    /// Blocks while the output writes; from async code prefer the background loop, which writes off the
    /// cooperative thread pool. Every line is attempted even if one fails.
    /// - Throws: `EMFError` (`.writeFailed`) with the first failure, if the output refused any line.
    public func flush() throws(EMFError) {
        try flushLock.withLock { _ throws(EMFError) in
            var firstFailure: EMFError?
            for line in drainEvents() {
                do {
                    try output.write(line)
                } catch {
                    writeFailures.add(1, ordering: .relaxed)
                    firstFailure = firstFailure ?? EMFError(code: .writeFailed, message: "the EMF output refused a line: \(error)", underlying: error)
                }
            }
            if let firstFailure { throw firstFailure }
        }
    }

    /// Starts flushing every ``EMFConfiguration/flushInterval`` in a background task; does nothing if it runs.
    ///
    /// The task sleeps with `Task.sleep` and hands each flush to a serial dispatch queue, so neither waiting
    /// nor writing holds a cooperative thread. Write failures are counted in ``failedWrites``.
    public func startFlushing() {
        loop.withLock { task in
            guard task == nil else { return }
            let interval = configuration.flushInterval
            task = Task { [self] in
                var next = ContinuousClock.now + interval
                while true {
                    do { try await Task.sleep(until: next, clock: .continuous) } catch { return }
                    next += interval
                    await flushOffThePool()
                }
            }
        }
    }

    /// Stops the background loop, waits for it to end and writes what was aggregated since its last flush.
    public func stopFlushing() async {
        let task = loop.withLock { task in
            defer { task = nil }
            return task
        }
        guard let task else { return }
        task.cancel()
        await task.value
        await flushOffThePool()
    }

    private func flushOffThePool() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            writeQueue.async {
                try? self.flush()  // counted in failedWrites
                done.resume()
            }
        }
    }

    /// Takes every series' aggregate and encodes the EMF documents.
    func drainEvents() -> [String] {
        let (live, retired) = registry.withLock { registry in
            defer { registry.retired = [] }
            return (Array(registry.live.values), registry.retired)
        }
        var snapshots: [MetricSnapshot] = []
        for series in live + retired {
            guard let drained = series.drain() else { continue }
            snapshots.append(snapshot(of: series.identity, drained))
        }
        let milliseconds = Int64((now().timeIntervalSince1970 * 1000).rounded(.down))
        return encoder.encode(snapshots, timestampMilliseconds: milliseconds)
    }

    private func snapshot(of identity: SeriesIdentity, _ drained: DrainedValues) -> MetricSnapshot {
        let units = configuration.units
        var values = drained.values
        let unit: EMFUnit
        switch identity.kind {
        case .counter:
            unit = units.byLabel[identity.label] ?? units.counter
        case .meter, .gauge, .recorder:
            unit = units.byLabel[identity.label] ?? units.recorder
        case .timer:
            let requested = drained.unit ?? units.byLabel[identity.label] ?? units.timer
            unit = requested.nanosecondsPerUnit == nil ? .seconds : requested
            let scale = unit.nanosecondsPerUnit!
            values = values.map { $0 / scale }
        }
        return MetricSnapshot(name: identity.label, dimensions: identity.dimensions, unit: unit, values: values)
    }

    // MARK: MetricsFactory

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        series(SeriesIdentity(kind: .counter, label: label, dimensions: dimensions)) { CounterSeries(identity: $0) }
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        series(SeriesIdentity(kind: .counter, label: label, dimensions: dimensions)) { CounterSeries(identity: $0) }
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        series(SeriesIdentity(kind: .meter, label: label, dimensions: dimensions)) { LastValueSeries(identity: $0) }
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let capacity = configuration.limits.samplesPerSeries
        if aggregate {
            return series(SeriesIdentity(kind: .recorder, label: label, dimensions: dimensions)) { SampleSeries(identity: $0, capacity: capacity) }
        }
        return series(SeriesIdentity(kind: .gauge, label: label, dimensions: dimensions)) { LastValueSeries(identity: $0) }
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let capacity = configuration.limits.samplesPerSeries
        return series(SeriesIdentity(kind: .timer, label: label, dimensions: dimensions)) { SampleSeries(identity: $0, capacity: capacity) }
    }

    public func destroyCounter(_ handler: any CounterHandler) { retire(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { retire(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { retire(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { retire(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { retire(handler) }

    /// The one series for `identity`: swift-metrics creates a handler each time a `Counter(label:)` is made, and
    /// all of them must add to the same aggregate.
    private func series<Series: AggregatingSeries>(_ identity: SeriesIdentity, make: (SeriesIdentity) -> Series) -> Series {
        registry.withLock { registry in
            if let existing = registry.live[identity] as? Series { return existing }
            let created = make(identity)
            registry.live[identity] = created
            return created
        }
    }

    private func retire(_ handler: AnyObject) {
        guard let series = handler as? any AggregatingSeries else { return }
        registry.withLock { registry in
            guard let current = registry.live[series.identity], current === series else { return }
            registry.live[series.identity] = nil
            registry.retired.append(series)
        }
    }
}

/// Where EMF lines go: each call receives one complete JSON document, without a line break.
public struct EMFOutput: Sendable {
    let write: @Sendable (String) throws -> Void

    /// Writes to this process's standard output, one line per document.
    public static var standardOutput: EMFOutput { fileHandle(.standardOutput) }

    /// Writes to a file handle (a file, a pipe, a socket), one line per document.
    public static func fileHandle(_ handle: FileHandle) -> EMFOutput {
        EMFOutput { line in try handle.write(contentsOf: Data((line + "\n").utf8)) }
    }

    /// Hands each document to `body` (for a logger, a buffer, or a test).
    public static func lines(_ body: @escaping @Sendable (String) throws -> Void) -> EMFOutput {
        EMFOutput(write: body)
    }
}

/// A failure of the EMF backend.
public struct EMFError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        /// The output (file handle or closure) threw while taking a line.
        public static let writeFailed = Code(name: "writeFailed")
    }

    public var code: Code
    public var message: String
    public var underlying: (any Error & Sendable)?

    public var description: String { "EMFError.\(code): \(message)" }
}
