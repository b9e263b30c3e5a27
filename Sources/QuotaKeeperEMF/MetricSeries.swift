import CoreMetrics
import Synchronization

/// One swift-metrics series (a label with its dimensions) and what it aggregated since the last flush.
///
/// Every handler keeps its state behind its own `Mutex`; a flush swaps the state out under that lock, so each
/// update lands either in this flush or in the next one, never in neither.
protocol AggregatingSeries: AnyObject, Sendable {
    var identity: SeriesIdentity { get }
    /// Takes what was aggregated since the previous call; `nil` if nothing was recorded.
    func drain() -> DrainedValues?
}

/// What identifies a series: its kind, label and dimensions (in the order given).
struct SeriesIdentity: Hashable, Sendable {
    enum Kind: Hashable, Sendable { case counter, meter, recorder, gauge, timer }
    var kind: Kind
    var label: String
    var dimensions: [Dimension]

    struct Dimension: Hashable, Sendable {
        var name: String
        var value: String
    }

    init(kind: Kind, label: String, dimensions: [(String, String)]) {
        self.kind = kind
        self.label = label
        self.dimensions = dimensions.map { Dimension(name: $0.0, value: $0.1) }
    }
}

/// The numbers a series contributes to one flush: one number (counter delta, last gauge value) or samples.
struct DrainedValues: Sendable, Equatable {
    var values: [Double]
    /// Overrides the configured unit (a timer's `preferDisplayUnit`).
    var unit: EMFUnit?
}

/// `Counter` and `FloatingPointCounter`: the sum of increments since the last flush (integer and fractional
/// parts kept apart, so integer counts stay exact).
final class CounterSeries: AggregatingSeries, CounterHandler, FloatingPointCounterHandler {
    let identity: SeriesIdentity
    private let state = Mutex(State())

    private struct State {
        var integerSum: Int64 = 0
        var fractionalSum: Double = 0
        var touched = false
    }

    init(identity: SeriesIdentity) { self.identity = identity }

    func increment(by amount: Int64) {
        state.withLock {
            let (sum, overflow) = $0.integerSum.addingReportingOverflow(amount)
            if overflow { $0.fractionalSum += Double(amount) } else { $0.integerSum = sum }
            $0.touched = true
        }
    }

    func increment(by amount: Double) {
        guard amount.isFinite else { return }
        state.withLock {
            $0.fractionalSum += amount
            $0.touched = true
        }
    }

    /// Counters report deltas per flush, so a reset only discards what was not flushed yet.
    func reset() {
        state.withLock { $0 = State() }
    }

    func drain() -> DrainedValues? {
        let drained = state.withLock { state -> State in
            defer { state = State() }
            return state
        }
        guard drained.touched else { return nil }
        return DrainedValues(values: [Double(drained.integerSum) + drained.fractionalSum])
    }
}

/// `Meter` and `Gauge`: the current value, written at every flush once it was set.
final class LastValueSeries: AggregatingSeries, MeterHandler, RecorderHandler {
    let identity: SeriesIdentity
    private let value = Mutex<Double?>(nil)

    init(identity: SeriesIdentity) { self.identity = identity }

    func set(_ value: Int64) { set(Double(value)) }
    func set(_ value: Double) {
        guard value.isFinite else { return }
        self.value.withLock { $0 = value }
    }
    func increment(by amount: Double) {
        guard amount.isFinite else { return }
        value.withLock { $0 = ($0 ?? 0) + amount }
    }
    func decrement(by amount: Double) { increment(by: -amount) }
    func record(_ value: Int64) { set(value) }
    func record(_ value: Double) { set(value) }

    /// A gauge keeps its value across flushes: it is the state now, not something that happened.
    func drain() -> DrainedValues? {
        value.withLock { $0 }.map { DrainedValues(values: [$0]) }
    }
}

/// Samples kept for a flush interval, bounded by reservoir sampling.
struct SampleReservoir {
    private(set) var samples: [Double] = []
    private(set) var seen = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    mutating func add(_ sample: Double) {
        seen += 1
        if samples.count < capacity {
            samples.append(sample)
        } else {
            let slot = Int.random(in: 0..<seen)
            if slot < capacity { samples[slot] = sample }
        }
    }
}

/// `Recorder` (aggregating) and `Timer`: every sample of the interval (a timer's in nanoseconds, which the
/// flush converts to the timer's unit).
final class SampleSeries: AggregatingSeries, RecorderHandler, TimerHandler {
    let identity: SeriesIdentity
    private let state: Mutex<State>
    private let capacity: Int

    private struct State {
        var reservoir: SampleReservoir
        var preferredUnit: EMFUnit?
    }

    init(identity: SeriesIdentity, capacity: Int) {
        self.identity = identity
        self.capacity = capacity
        self.state = Mutex(State(reservoir: SampleReservoir(capacity: capacity)))
    }

    func record(_ value: Int64) { record(Double(value)) }
    func record(_ value: Double) {
        guard value.isFinite else { return }
        state.withLock { $0.reservoir.add(value) }
    }

    func recordNanoseconds(_ duration: Int64) { record(duration) }

    /// Maps swift-metrics' display unit to the nearest CloudWatch time unit (CloudWatch has no nanoseconds,
    /// minutes or hours).
    func preferDisplayUnit(_ unit: TimeUnit) {
        let emfUnit: EMFUnit = switch unit {
        case .nanoseconds, .microseconds: .microseconds
        case .milliseconds: .milliseconds
        default: .seconds
        }
        state.withLock { $0.preferredUnit = emfUnit }
    }

    func drain() -> DrainedValues? {
        let capacity = capacity
        let (samples, unit) = state.withLock { state -> ([Double], EMFUnit?) in
            defer { state.reservoir = SampleReservoir(capacity: capacity) }
            return (state.reservoir.samples, state.preferredUnit)
        }
        return samples.isEmpty ? nil : DrainedValues(values: samples, unit: unit)
    }
}
