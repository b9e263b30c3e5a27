import DequeModule
import Glibc
import Synchronization

/// `CLOCK_MONOTONIC` now, in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

extension Deque {
    /// Removes and returns up to `limit` elements from the front.
    mutating func popFirst(upTo limit: Int) -> [Element] {
        let taken = Array(prefix(limit))
        removeFirst(taken.count)
        return taken
    }

    /// Removes and returns every element, front first.
    mutating func removeAllElements() -> [Element] {
        defer { removeAll() }
        return Array(self)
    }
}

/// The hand-over point between async callers and the layer's threads: the queue of unsent commands,
/// every command's deadline, the state of each connection thread, and shutdown.
///
/// `@unchecked Sendable` because the compiler cannot see the locking: every stored `var` is read and
/// written only between `pthread_mutex_lock(mutex)` and `pthread_mutex_unlock(mutex)` (all access goes
/// through `locked`), and the pthread objects are allocated once in `init`, never moved, and destroyed
/// in `deinit`, when no thread can hold a reference any more.
final class CommandQueue: @unchecked Sendable {
    enum WorkerState { case connecting, healthy, down }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when commands are queued (connection threads wait here).
    private let workAvailable = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Signalled when the watchdog has a new earliest deadline or must stop.
    private let watchdogWake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Broadcast on shutdown, to end reconnect backoffs early.
    private let backoffWake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private let maximumBatch: Int
    /// How long a connection thread polls for new commands before it sleeps on `workAvailable`.
    private let spinNanoseconds: UInt64
    private var unsent = Deque<PendingCommand>() {
        didSet { unsentCount.store(unsent.count, ordering: .releasing) }
    }
    /// `unsent.count`, readable without the mutex (the spinning threads poll it).
    private let unsentCount = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Every command not known to be finished, in deadline order (all share one timeout).
    private var unfinished = Deque<PendingCommand>()
    private var workers: [WorkerState]
    private var lastConnectionError: RedisError?
    private var isShutdown = false
    private var runningThreads = 0
    private var onAllThreadsExited: [@Sendable () -> Void] = []

    init(workerCount: Int, maximumBatch: Int, spin: Duration = .zero) {
        self.maximumBatch = max(1, maximumBatch)
        let (seconds, attoseconds) = spin.components
        spinNanoseconds = UInt64(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        self.workers = Array(repeating: .connecting, count: workerCount)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        for condition in [workAvailable, watchdogWake, backoffWake] { pthread_cond_init(condition, &attributes) }
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        for condition in [workAvailable, watchdogWake, backoffWake] {
            pthread_cond_destroy(condition)
            condition.deallocate()
        }
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Waits on `condition` (mutex held) until signalled or until the monotonic `deadline`.
    private func wait(_ condition: UnsafeMutablePointer<pthread_cond_t>, until deadline: UInt64?) {
        guard let deadline else {
            pthread_cond_wait(condition, mutex)
            return
        }
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &time)
    }

    // MARK: Callers

    /// Queues commands for the connection threads, or fails them at once when the client is shut down or
    /// every connection is down (so callers learn about an unreachable Redis immediately).
    func submit(_ commands: [PendingCommand]) {
        let refusal: RedisError? = locked {
            if isShutdown {
                return RedisError(code: .clientShutdown, message: "the Redis client was shut down")
            }
            if let error = lastConnectionError, workers.allSatisfy({ $0 == .down }) {
                return error
            }
            if unfinished.isEmpty { pthread_cond_signal(watchdogWake) }
            unsent.append(contentsOf: commands)
            unfinished.append(contentsOf: commands)
            pthread_cond_signal(workAvailable)
            return nil
        }
        if let refusal {
            for command in commands { command.finish(.failure(refusal)) }
        }
    }

    // MARK: Connection threads

    /// Blocks until commands are queued and takes up to one batch of them; `nil` after shutdown.
    ///
    /// Polls for up to the spin time first: a single caller's next command, sent right after its last
    /// reply, is then taken without a condition-variable sleep and wake-up (several microseconds each).
    func nextBatch() -> [PendingCommand]? {
        if spinNanoseconds > 0, unsentCount.load(ordering: .acquiring) == 0 {
            let deadline = monotonicNanoseconds() + spinNanoseconds
            while unsentCount.load(ordering: .acquiring) == 0, !stopping.load(ordering: .relaxed),
                monotonicNanoseconds() < deadline
            {}
        }
        return locked {
            while unsent.isEmpty && !isShutdown { wait(workAvailable, until: nil) }
            if isShutdown { return nil }
            let batch = unsent.popFirst(upTo: maximumBatch)
            if !unsent.isEmpty { pthread_cond_signal(workAvailable) }
            return batch
        }
    }

    /// Puts commands that never reached the server back at the front of the queue, in their order, for the
    /// next healthy connection (their deadlines still hold); fails them if the client is shut down.
    func requeue(_ commands: [PendingCommand]) {
        guard !commands.isEmpty else { return }
        let accepted = locked {
            guard !isShutdown else { return false }
            unsent.prepend(contentsOf: commands.filter { !$0.isFinished })
            pthread_cond_signal(workAvailable)
            return true
        }
        if !accepted {
            let error = RedisError(code: .clientShutdown, message: "the Redis client was shut down")
            for command in commands { command.finish(.failure(error)) }
        }
    }

    /// Records a thread's connection state; when every connection is down, fails all queued commands with
    /// the connection error instead of letting them wait.
    func setState(_ state: WorkerState, ofWorker index: Int, error: RedisError? = nil) {
        let (failed, reason): ([PendingCommand], RedisError?) = locked {
            workers[index] = state
            if let error { lastConnectionError = error }
            guard state == .down, workers.allSatisfy({ $0 == .down }) else { return ([], nil) }
            return (unsent.removeAllElements(), lastConnectionError)
        }
        if let reason {
            for command in failed { command.finish(.failure(reason)) }
        }
    }

    /// Sleeps a reconnect backoff; returns `false` if the client shut down meanwhile.
    func sleepBackoff(nanoseconds: UInt64) -> Bool {
        locked {
            let deadline = monotonicNanoseconds() + nanoseconds
            while !isShutdown && monotonicNanoseconds() < deadline { wait(backoffWake, until: deadline) }
            return !isShutdown
        }
    }

    var shuttingDown: Bool { locked { isShutdown } }

    // MARK: Watchdog

    /// Runs on the watchdog thread until shutdown: answers `.timeout` to every command past its deadline,
    /// queued or already written, so no caller waits longer than the command timeout.
    func runWatchdog(timeout: RedisError) {
        let sweepInterval: UInt64 = 100_000_000
        pthread_mutex_lock(mutex)
        while !isShutdown {
            let now = monotonicNanoseconds()
            var expired: [PendingCommand] = []
            while let oldest = unfinished.first, oldest.deadline <= now || oldest.isFinished {
                _ = unfinished.popFirst()
                if !oldest.isFinished { expired.append(oldest) }
            }
            if !expired.isEmpty {
                pthread_mutex_unlock(mutex)
                for command in expired { command.finish(.failure(timeout)) }
                pthread_mutex_lock(mutex)
                continue
            }
            wait(watchdogWake, until: unfinished.first.map { min($0.deadline, now + sweepInterval) })
        }
        pthread_mutex_unlock(mutex)
    }

    // MARK: Lifecycle

    func threadStarted() { locked { runningThreads += 1 } }

    func threadExited() {
        let callbacks: [@Sendable () -> Void] = locked {
            runningThreads -= 1
            guard runningThreads == 0 else { return [] }
            defer { onAllThreadsExited = [] }
            return onAllThreadsExited
        }
        for callback in callbacks { callback() }
    }

    /// Calls `onExit` once the client is shut down and its last thread has exited (at once if that is so).
    func whenStopped(_ onExit: @escaping @Sendable () -> Void) {
        let exitNow: Bool = locked {
            guard isShutdown, runningThreads == 0 else {
                onAllThreadsExited.append(onExit)
                return false
            }
            return true
        }
        if exitNow { onExit() }
    }

    /// Stops accepting commands, fails the queued ones, wakes every thread, and calls `onExit` once the
    /// last thread has exited (at once if none runs).
    func shutdown(onExit: (@Sendable () -> Void)? = nil) {
        let (failed, exitNow): ([PendingCommand], Bool) = locked {
            isShutdown = true
            stopping.store(true, ordering: .relaxed)
            if let onExit, runningThreads > 0 { onAllThreadsExited.append(onExit) }
            for condition in [workAvailable, watchdogWake, backoffWake] { pthread_cond_broadcast(condition) }
            return (unsent.removeAllElements(), runningThreads == 0)
        }
        let error = RedisError(code: .clientShutdown, message: "the Redis client was shut down")
        for command in failed { command.finish(.failure(error)) }
        if exitNow { onExit?() }
    }
}
