import Logging
import Synchronization

/// Decides which node each command goes to, above one `NodePool` per node.
///
/// With `cluster=auto` (the default) the first command asks the seed node `CLUSTER SLOTS`: a server without
/// cluster support makes the router a pass-through to the seed pool (one atomic load per command); a cluster
/// node gives the slot map, and from then on each command goes to the master of its key's slot (keyless
/// commands to any master). Error replies drive the map: `MOVED` updates it and retries there, `ASK` sends
/// `ASKING` + the command to the importing node, `TRYAGAIN` / `CLUSTERDOWN` retry after a jittered pause,
/// and every retry stays within the command's one deadline. The map is reloaded (coalesced, from any
/// known master) on `MOVED`, `CLUSTERDOWN`, `READONLY`, connection loss, and every 10 s of use.
final class ClusterRouter: Sendable {
    private enum Mode: Int { case undetermined = 0, standalone, cluster }

    private struct State {
        /// The master pool of each slot (16384 entries once a map is loaded; nil for an uncovered slot).
        var slotOwners: [NodePool?] = []
        /// One pool per master, by endpoint (the seed's pool when the seed is a master).
        var masters: [RedisConfiguration.Endpoint: NodePool] = [:]
        /// The coalesced reload under way, if any.
        var refresh: Task<Void, any Error>?
        /// When the last reload finished (monotonic nanoseconds).
        var lastRefresh: UInt64 = 0
        var isShutdown = false
        /// Every pool whose threads may still run (the seed, masters, pools dropped by a map reload), by identity.
        var running: [ObjectIdentifier: NodePool] = [:]
        /// Callers of `waitUntilStopped()` waiting for the last pool's threads to exit.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var isStopped = false
    }

    /// The pool of the configured endpoint: the only one of a single-node client; a cluster's first contact.
    let seed: NodePool
    private let configuration: RedisConfiguration
    private let logger: Logger
    private let timeoutNanoseconds: UInt64
    private let mode: Atomic<Int>
    private let state = Mutex(State())

    /// Redirections and retries one command may take before its last error reply is returned.
    static let maximumAttempts = 16
    /// How often a map in use is reloaded even when nothing went wrong.
    static let refreshInterval: UInt64 = 10_000_000_000
    /// The least time between two reloads triggered by errors (they coalesce meanwhile).
    static let minimumRefreshGap: UInt64 = 100_000_000

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        seed = NodePool(configuration: configuration, logger: logger)
        timeoutNanoseconds = UInt64(RedisConnection.milliseconds(configuration.timeouts.command)) * 1_000_000
        mode = Atomic((configuration.cluster == .off ? Mode.standalone : .undetermined).rawValue)
        state.withLock { [seed] in $0.running[ObjectIdentifier(seed)] = seed }
    }

    /// A deadline one command timeout from now.
    func deadline() -> UInt64 { monotonicNanoseconds() + timeoutNanoseconds }

    // MARK: Commands

    /// Runs one command where its key lives; error replies come back as `.error` values.
    func execute(_ command: RedisCommand) async throws -> RedisReply {
        let deadline = deadline()
        if try await isStandalone(deadline: deadline) { return try await seed.run(command, deadline: deadline) }
        return try await routed(command, deadline: deadline, after: nil)
    }

    /// Runs commands back to back and returns their replies in order. On a cluster, commands are grouped by
    /// slot (a keyless command goes with the nearest keyed command before it, so `SCRIPT LOAD` + `EVALSHA`
    /// land on one node); the groups of one slot run one after another, in order, while different slots run
    /// concurrently (Redis orders nothing across slots anyway), and a redirected command is retried on its own.
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        let deadline = deadline()
        if try await isStandalone(deadline: deadline) { return try await seed.run(commands, deadline: deadline) }
        if commands.count == 1 { return [try await routed(commands[0], deadline: deadline, after: nil)] }
        var groups: [(slot: Int?, indices: [Int])] = []
        var currentSlot: Int?
        for (index, command) in commands.enumerated() {
            if let slot = command.slot { currentSlot = slot }
            let slot = command.slot ?? currentSlot ?? commands[index...].lazy.compactMap(\.slot).first
            if let last = groups.indices.last, groups[last].slot == slot {
                groups[last].indices.append(index)
            } else {
                groups.append((slot, [index]))
            }
        }
        let slots = groups.reduce(into: [Int?]()) { if !$0.contains($1.slot) { $0.append($1.slot) } }
        var replies = [RedisReply](repeating: .null, count: commands.count)
        try await withThrowingTaskGroup(of: [(Int, RedisReply)].self) { running in
            for slot in slots {
                let chain = groups.filter { $0.slot == slot }
                running.addTask { [self] in
                    var answered: [(Int, RedisReply)] = []
                    for group in chain {
                        let groupReplies = try await runGroup(group.indices.map { commands[$0] }, slot: slot, deadline: deadline)
                        answered.append(contentsOf: zip(group.indices, groupReplies))
                    }
                    return answered
                }
            }
            for try await answered in running {
                for (index, reply) in answered { replies[index] = reply }
            }
        }
        return replies
    }

    /// The pool of every master (the seed alone for a single node), for commands every shard must see.
    func masterPools() async throws -> [NodePool] {
        if try await isStandalone(deadline: deadline()) { return [seed] }
        let pools = state.withLock { Array($0.masters.values) }
        if !pools.isEmpty { return pools }
        try await refresh(deadline: deadline(), minimumGap: 0)
        return state.withLock { Array($0.masters.values) }
    }

    /// Starts stopping every pool (commands not yet written fail with `.clientShutdown`, written ones get
    /// their replies) without waiting; `waitUntilStopped()` returns when their threads have exited.
    func beginShutdown() {
        let (pools, refresh) = state.withLock { state in
            state.isShutdown = true
            defer { state.masters = [:]; state.slotOwners = [] }
            return (Array(state.running.values), state.refresh)
        }
        refresh?.cancel()
        if pools.isEmpty { poolStopped(nil) }
        for pool in pools { stop(pool) }
    }

    /// Returns once the client is shut down and every thread of every pool has exited.
    func waitUntilStopped() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let stopped = state.withLock { state in
                if !state.isStopped { state.stopWaiters.append(continuation) }
                return state.isStopped
            }
            if stopped { continuation.resume() }
        }
    }

    /// Stops one pool; when it was the last one running after `beginShutdown()`, the client is stopped.
    private func stop(_ pool: NodePool) {
        pool.shutdown { [self] in poolStopped(pool) }
    }

    private func poolStopped(_ pool: NodePool?) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            if let pool { state.running[ObjectIdentifier(pool)] = nil }
            guard state.isShutdown, state.running.isEmpty, !state.isStopped else { return [] }
            state.isStopped = true
            defer { state.stopWaiters = [] }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Routing

    private func isStandalone(deadline: UInt64) async throws -> Bool {
        switch Mode(rawValue: mode.load(ordering: .acquiring)) {
        case .standalone: return true
        case .cluster: return false
        default:
            try await refresh(deadline: deadline, minimumGap: 0)
            return mode.load(ordering: .acquiring) == Mode.standalone.rawValue
        }
    }

    /// One command, following redirections until a reply that is not one, or the deadline.
    /// - Parameter previous: a redirection reply the command already got (from a pipeline), to act on first.
    private func routed(_ command: RedisCommand, deadline: UInt64, after previous: (reply: RedisReply, from: NodePool)?) async throws -> RedisReply {
        var next: (pool: NodePool, asking: Bool)?
        var last = previous
        var attempt = 0
        while true {
            if let (reply, from) = last {
                guard case .error(let message) = reply,
                      let redirection = ClusterRedirection(errorMessage: message, askedHost: from.host)
                else { return reply }
                attempt += 1
                guard attempt < Self.maximumAttempts else { return reply }
                switch redirection {
                case .moved(let slot, let endpoint):
                    // nodes that disagree while a migration ends may bounce a command: pause after the first hops
                    if attempt > 2 { guard try await pause(attempt: attempt, deadline: deadline) else { return reply } }
                    next = (learnOwner(of: slot, endpoint), false)
                    refreshInBackground()
                case .ask(_, let endpoint):
                    next = (pool(for: endpoint), true)
                case .tryAgain:
                    guard try await pause(attempt: attempt, deadline: deadline) else { return reply }
                    next = nil
                case .clusterDown, .readOnly:
                    guard try await pause(attempt: attempt, deadline: deadline) else { return reply }
                    try? await refresh(deadline: deadline, minimumGap: Self.minimumRefreshGap)
                    next = nil
                }
            }
            let pool = try next?.pool ?? owner(of: command.slot)
            do {
                let reply = next?.asking == true
                    ? try await pool.run([Self.asking, command], deadline: deadline)[1]
                    : try await pool.run(command, deadline: deadline)
                last = (reply, pool)
            } catch let error as RedisError where wasNotSent(error) {
                attempt += 1
                guard attempt < Self.maximumAttempts, try await pause(attempt: attempt, deadline: deadline) else { throw error }
                try? await refresh(deadline: deadline, minimumGap: Self.minimumRefreshGap)
                next = nil
                last = nil
            } catch let error as RedisError {
                if error.code == .connectionClosed || error.code == .timeout { refreshInBackground() }
                throw error
            }
        }
    }

    /// Commands that share a node, back to back; retried as a whole while none was sent (the master is
    /// unreachable), then each redirected command follows its redirection alone.
    private func runGroup(_ commands: [RedisCommand], slot: Int?, deadline: UInt64) async throws -> [RedisReply] {
        var attempt = 0
        while true {
            let pool = try owner(of: slot)
            let replies: [RedisReply]
            do {
                replies = try await pool.run(commands, deadline: deadline)
            } catch let error as RedisError where wasNotSent(error) {
                attempt += 1
                guard attempt < Self.maximumAttempts, try await pause(attempt: attempt, deadline: deadline) else { throw error }
                try? await refresh(deadline: deadline, minimumGap: Self.minimumRefreshGap)
                continue
            } catch let error as RedisError {
                if error.code == .connectionClosed || error.code == .timeout { refreshInBackground() }
                throw error
            }
            var settled = replies
            for (index, reply) in replies.enumerated() {
                guard case .error(let message) = reply, ClusterRedirection(errorMessage: message, askedHost: pool.host) != nil
                else { continue }
                settled[index] = try await routed(commands[index], deadline: deadline, after: (reply, pool))
            }
            return settled
        }
    }

    private static let asking = RedisCommand(["ASKING"])

    /// Whether a failure guarantees the command never reached Redis (so sending it again cannot run it twice).
    private func wasNotSent(_ error: RedisError) -> Bool {
        switch error.code {
        case .connectionRefused, .connectionFailed: return true
        case .clientShutdown: return !state.withLock { $0.isShutdown }  // a pool dropped by a map reload
        default: return false
        }
    }

    /// Sleeps a jittered pause if it ends before the deadline; returns false (without sleeping) otherwise.
    private func pause(attempt: Int, deadline: UInt64) async throws -> Bool {
        let delay = ClusterBackoff.nanoseconds(attempt: attempt, random: Double.random(in: 0..<1))
        guard monotonicNanoseconds() + delay < deadline else { return false }
        try await Task.sleep(nanoseconds: delay)
        return true
    }

    /// The pool of the slot's master (any master for a keyless command); schedules the periodic reload.
    private func owner(of slot: Int?) throws -> NodePool {
        let now = monotonicNanoseconds()
        let (pool, stale) = try state.withLock { state throws(RedisError) -> (NodePool?, Bool) in
            if state.isShutdown { throw RedisError(code: .clientShutdown, message: "the Redis client was shut down") }
            let stale = now &- state.lastRefresh > Self.refreshInterval && state.refresh == nil
            if let slot, state.slotOwners.count == HashSlot.count { return (state.slotOwners[slot], stale) }
            return (slot == nil ? state.masters.values.randomElement() : nil, stale)
        }
        if stale { refreshInBackground() }
        if let pool { return pool }
        refreshInBackground()
        throw RedisError(
            code: .connectionFailed,
            message: "no master of the Redis Cluster at \(configuration.endpoint) serves slot \(slot.map(String.init) ?? "any")")
    }

    /// Records a `MOVED`: the slot's master is `endpoint` from now on.
    private func learnOwner(of slot: Int, _ endpoint: RedisConfiguration.Endpoint) -> NodePool {
        let pool = pool(for: endpoint)
        state.withLock { state in
            if state.slotOwners.count == HashSlot.count { state.slotOwners[slot] = pool }
            if state.masters[endpoint] == nil { state.masters[endpoint] = pool }
        }
        return pool
    }

    /// The pool of a node, made on first use.
    private func pool(for endpoint: RedisConfiguration.Endpoint) -> NodePool {
        if endpoint == seed.endpoint { return seed }
        return state.withLock { state in
            if let pool = state.masters[endpoint] { return pool }
            var node = configuration
            node.endpoint = endpoint
            node.cluster = .off
            let pool = NodePool(configuration: node, logger: logger)
            if state.isShutdown {
                pool.shutdown {}  // a redirection raced with shutdown: a pool that refuses everything
            } else {
                state.masters[endpoint] = pool
                state.running[ObjectIdentifier(pool)] = pool
            }
            return pool
        }
    }

    // MARK: The slot map

    private func refreshInBackground() {
        Task { [self] in try? await refresh(deadline: deadline(), minimumGap: Self.minimumRefreshGap) }
    }

    /// Reloads the slot map, joining a reload under way; skipped if the last one ended within `minimumGap`.
    private func refresh(deadline: UInt64, minimumGap: UInt64) async throws {
        let task: Task<Void, any Error>? = try state.withLock { current throws(RedisError) in
            guard !current.isShutdown else {
                throw RedisError(code: .clientShutdown, message: "the Redis client was shut down")
            }
            if let running = current.refresh { return running }
            guard monotonicNanoseconds() &- current.lastRefresh >= minimumGap else { return nil }
            let task = Task { [self] in
                defer { state.withLock { $0.refresh = nil; $0.lastRefresh = monotonicNanoseconds() } }
                try await loadTopology(deadline: deadline)
            }
            current.refresh = task
            return task
        }
        try await task?.value
    }

    /// Asks the known masters, then the seed, for `CLUSTER SLOTS` and installs the first answer.
    private func loadTopology(deadline: UInt64) async throws {
        let known = state.withLock { Array($0.masters.values) }.filter { $0 !== seed }.shuffled()
        var lastError = RedisError(code: .connectionFailed, message: "no node of the Redis Cluster at \(configuration.endpoint) answered")
        for pool in [seed] + known {
            let reply: RedisReply
            do {
                reply = try await pool.run(RedisCommand(["CLUSTER", "SLOTS"]), deadline: deadline)
            } catch let error as RedisError {
                lastError = error
                continue
            }
            if case .error(let message) = reply {
                if pool === seed, mode.load(ordering: .acquiring) == Mode.undetermined.rawValue {
                    if message.contains("cluster support disabled") {
                        guard configuration.cluster != .on else {
                            throw RedisError(
                                code: .invalidArgument,
                                message: "Redis at \(configuration.endpoint) is not a cluster node, but cluster=on was asked for")
                        }
                        mode.store(Mode.standalone.rawValue, ordering: .releasing)
                        return
                    }
                    if message.hasPrefix("NOPERM") {
                        // An ACL user without CLUSTER SLOTS cannot route: one node, unless cluster=on insists.
                        guard configuration.cluster != .on else { throw RedisError.errorReply(message, to: "CLUSTER SLOTS") }
                        logger.debug("CLUSTER SLOTS not permitted for this ACL user; using the endpoint as a single node")
                        mode.store(Mode.standalone.rawValue, ordering: .releasing)
                        return
                    }
                }
                lastError = RedisError(code: .serverError, message: "CLUSTER SLOTS at \(pool.endpoint) failed: \(message)")
                continue
            }
            do {
                install(try ClusterTopology(slotsReply: reply, askedHost: pool.host))
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Makes `topology` the slot map: new masters get a pool, masters that left lose theirs.
    private func install(_ topology: ClusterTopology) {
        var owners = [NodePool?](repeating: nil, count: HashSlot.count)
        let pools = Dictionary(uniqueKeysWithValues: topology.masters.map { ($0, pool(for: $0)) })
        for range in topology.ranges {
            for slot in range.slots { owners[slot] = pools[range.master] }
        }
        let dropped: [NodePool] = state.withLock { state in
            let dropped = state.masters.filter { pools[$0.key] == nil && $0.value !== seed }.map(\.value)
            state.masters = pools
            state.slotOwners = owners
            return dropped
        }
        mode.store(Mode.cluster.rawValue, ordering: .releasing)
        logger.debug(
            "Redis Cluster map loaded",
            metadata: ["redis.masters": "\(topology.masters.map(\.description).joined(separator: ","))"])
        for pool in dropped { stop(pool) }
    }
}

extension NodePool {
    /// The host of the node, for cluster replies that name a node by port alone.
    var host: String {
        if case .tcp(let host, _) = endpoint { return host }
        return "127.0.0.1"
    }
}
