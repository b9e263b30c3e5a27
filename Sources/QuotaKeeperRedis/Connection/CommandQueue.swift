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
/// A caller whose command finds a connection idle (its thread asleep, nothing queued) writes the command
/// itself (`IdleConnection.write`, a non-blocking write into an empty socket buffer) and hands the connection
/// back to its thread to read the reply: the thread's wake-up then overlaps Redis's work instead of preceding it.
///
/// `@unchecked Sendable` because the compiler cannot see the locking: every stored `var` is read and
/// written only between `pthread_mutex_lock(mutex)` and `pthread_mutex_unlock(mutex)` (all access goes
/// through `locked`), and the pthread objects are allocated once in `init`, never moved, and destroyed
/// in `deinit`, when no thread can hold a reference any more.
final class CommandQueue: @unchecked Sendable {
    enum WorkerState { case connecting, healthy, down }

    /// What a connection thread is given to do next.
    enum Work {
        /// Commands to write and read (the ordinary path).
        case batch([PendingCommand])
        /// Commands a caller already wrote on the thread's connection: only their replies are left to read.
        case written([PendingCommand])
        /// A caller's write on the connection failed (its commands are already re-queued or failed): replace it.
        case broken(RedisError)
    }

    /// Who holds a connection thread's connection.
    private enum Handoff {
        /// The thread is working (or waking up to look for work).
        case busy
        /// The thread sleeps with nothing to do; a caller may claim its connection and write on it.
        case idle(IdleConnection)
        /// A caller is writing on the connection; the thread waits for it to be handed back.
        case claimed
        /// The caller is done; the thread takes this next.
        case handedBack(Work)
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// One per connection thread: signalled when there is work for it (or a claimed connection comes back).
    private let workerWake: [UnsafeMutablePointer<pthread_cond_t>]
    /// Signalled when the watchdog has a new earliest deadline, a thread exits, or the client must stop.
    private let watchdogWake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Broadcast on shutdown, to end reconnect backoffs early.
    private let backoffWake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private let maximumBatch: Int
    /// How long a connection thread polls for new commands before it sleeps on its condition variable.
    private let spinNanoseconds: UInt64
    /// How long shutdown lets written commands wait for their replies before it shuts their sockets down.
    private let shutdownGraceNanoseconds: UInt64
    private var unsent = Deque<PendingCommand>() {
        didSet { unsentCount.store(unsent.count, ordering: .releasing) }
    }
    /// `unsent.count`, readable without the mutex (the spinning threads poll it).
    private let unsentCount = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Every command not known to be finished, in deadline order (all share one timeout).
    private var unfinished = Deque<PendingCommand>()
    private var workers: [WorkerState]
    private var handoffs: [Handoff]
    /// Each thread's open socket, so shutdown can end a blocking read (`shutdown(2)`) instead of waiting it out.
    private var descriptors: [Int32?]
    private var socketsShutDown = false
    private var lastConnectionError: RedisError?
    private var isShutdown = false
    private var runningThreads = 0
    private var onAllThreadsExited: [@Sendable () -> Void] = []

    /// Largest command batch (bytes of arguments) a caller writes itself on an idle connection.
    static let directWriteLimit = 16 * 1024

    init(workerCount: Int, maximumBatch: Int, spin: Duration = .zero, shutdownGrace: Duration = .milliseconds(100)) {
        self.maximumBatch = max(1, maximumBatch)
        spinNanoseconds = Self.nanoseconds(spin)
        shutdownGraceNanoseconds = Self.nanoseconds(shutdownGrace)
        self.workers = Array(repeating: .connecting, count: workerCount)
        handoffs = Array(repeating: .busy, count: workerCount)
        descriptors = Array(repeating: nil, count: workerCount)
        workerWake = (0..<workerCount).map { _ in UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1) }
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        for condition in workerWake + [watchdogWake, backoffWake] { pthread_cond_init(condition, &attributes) }
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        for condition in workerWake + [watchdogWake, backoffWake] {
            pthread_cond_destroy(condition)
            condition.deallocate()
        }
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
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

    /// Wakes one sleeping connection thread (mutex held), marking it busy so the next wake picks another.
    private func wakeIdleWorker() {
        guard let index = handoffs.firstIndex(where: { if case .idle = $0 { true } else { false } }) else { return }
        handoffs[index] = .busy
        pthread_cond_signal(workerWake[index])
    }

    // MARK: Callers

    /// Queues commands for the connection threads, or fails them at once when the client is shut down or
    /// every connection is down (so callers learn about an unreachable Redis immediately).
    ///
    /// When nothing is queued and a connection is idle, the caller writes the commands on it itself (a
    /// non-blocking write: every earlier command on the connection was answered, so its send buffer is empty)
    /// and hands the connection back to its thread to read the replies.
    func submit(_ commands: [PendingCommand]) {
        enum Decision {
            case refused(RedisError)
            case queued
            case claimed(Int, IdleConnection)
        }
        let mayWriteDirectly = commands.reduce(0) { $0 + $1.command.packedArguments.count } <= Self.directWriteLimit
        let decision: Decision = locked {
            if isShutdown {
                return .refused(RedisError(code: .clientShutdown, message: "the Redis client was shut down"))
            }
            if let error = lastConnectionError, workers.allSatisfy({ $0 == .down }) {
                return .refused(error)
            }
            if unfinished.isEmpty { pthread_cond_signal(watchdogWake) }
            unfinished.append(contentsOf: commands)
            if mayWriteDirectly, unsent.isEmpty {
                for (index, handoff) in handoffs.enumerated() {
                    if case .idle(let connection) = handoff {
                        handoffs[index] = .claimed
                        return .claimed(index, connection)
                    }
                }
            }
            unsent.append(contentsOf: commands)
            wakeIdleWorker()
            return .queued
        }
        switch decision {
        case .refused(let error):
            for command in commands { command.finish(.failure(error)) }
        case .queued:
            break
        case .claimed(let index, let connection):
            let work = connection.write(commands)
            locked {
                handoffs[index] = .handedBack(work)
                pthread_cond_signal(workerWake[index])
            }
        }
    }

    // MARK: Connection threads

    /// Blocks until there is work for connection thread `index` and returns it: up to one batch of queued
    /// commands, or its connection handed back by a caller that wrote on it; `nil` after shutdown.
    ///
    /// Polls for up to the spin time first: a single caller's next command, sent right after its last
    /// reply, is then taken without a condition-variable sleep and wake-up (several microseconds each).
    func nextWork(worker index: Int, idle connection: IdleConnection) -> Work? {
        if spinNanoseconds > 0, unsentCount.load(ordering: .acquiring) == 0 {
            let deadline = monotonicNanoseconds() + spinNanoseconds
            while unsentCount.load(ordering: .acquiring) == 0, !stopping.load(ordering: .relaxed),
                monotonicNanoseconds() < deadline
            {}
        }
        return locked {
            while true {
                switch handoffs[index] {
                case .handedBack(let work):
                    handoffs[index] = .busy
                    return work
                case .claimed:
                    // a caller is writing on this connection: its replies are this thread's to read, shutdown or not
                    wait(workerWake[index], until: nil)
                    continue
                case .busy, .idle:
                    break
                }
                if isShutdown {
                    handoffs[index] = .busy
                    return nil
                }
                if !unsent.isEmpty {
                    handoffs[index] = .busy
                    let batch = unsent.popFirst(upTo: maximumBatch)
                    if !unsent.isEmpty { wakeIdleWorker() }
                    return .batch(batch)
                }
                handoffs[index] = .idle(connection)
                wait(workerWake[index], until: nil)
            }
        }
    }

    /// Puts commands that never reached the server back at the front of the queue, in their order, for the
    /// next healthy connection (their deadlines still hold); fails them if the client is shut down.
    func requeue(_ commands: [PendingCommand]) {
        guard !commands.isEmpty else { return }
        let accepted = locked {
            guard !isShutdown else { return false }
            unsent.prepend(contentsOf: commands.filter { !$0.isFinished })
            wakeIdleWorker()
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

    /// Records thread `index`'s open socket (shut down at once if shutdown's grace has already ended).
    func register(socket descriptor: Int32, ofWorker index: Int) {
        locked {
            descriptors[index] = descriptor
            if socketsShutDown { Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    /// Forgets thread `index`'s socket; called before it is closed, so shutdown never touches a reused descriptor.
    func unregisterSocket(ofWorker index: Int) {
        locked { descriptors[index] = nil }
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
    ///
    /// After shutdown it gives written commands the shutdown grace to be answered, then shuts down the socket
    /// of every connection thread still running (one blocked in a read then fails at once and exits).
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
        let graceEnd = monotonicNanoseconds() + shutdownGraceNanoseconds
        while runningThreads > 1, monotonicNanoseconds() < graceEnd { wait(watchdogWake, until: graceEnd) }
        socketsShutDown = true
        for descriptor in descriptors.compactMap({ $0 }) { Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
        pthread_mutex_unlock(mutex)
    }

    // MARK: Lifecycle

    func threadStarted() { locked { runningThreads += 1 } }

    func threadExited() {
        let callbacks: [@Sendable () -> Void] = locked {
            runningThreads -= 1
            pthread_cond_signal(watchdogWake)
            guard runningThreads == 0 else { return [] }
            defer { onAllThreadsExited = [] }
            return onAllThreadsExited
        }
        for callback in callbacks { callback() }
    }

    /// Stops accepting commands, fails the queued ones, wakes every thread, and calls `onExit` once the
    /// last thread has exited (at once if none runs). Written commands get their replies if they come within
    /// the shutdown grace; then the watchdog shuts the remaining sockets down.
    func shutdown(onExit: (@Sendable () -> Void)? = nil) {
        let (failed, exitNow): ([PendingCommand], Bool) = locked {
            isShutdown = true
            stopping.store(true, ordering: .relaxed)
            if let onExit, runningThreads > 0 { onAllThreadsExited.append(onExit) }
            for condition in workerWake + [watchdogWake, backoffWake] { pthread_cond_broadcast(condition) }
            return (unsent.removeAllElements(), runningThreads == 0)
        }
        let error = RedisError(code: .clientShutdown, message: "the Redis client was shut down")
        for command in failed { command.finish(.failure(error)) }
        if exitNow { onExit?() }
    }
}
