import Foundation
import QuotaKeeperRedis

/// A Redis Cluster of real `redis-server` processes on loopback ports: 3 masters, each with one replica,
/// created with `redis-cli --cluster create` (as an operator would), under `QUOTAKEEPER_TEST_SERVERS_DIR` so
/// scripts/test stops every node.
///
/// Forming a cluster takes seconds, so the cluster tests share one (`LocalRedisCluster.shared`); a test that
/// changes the topology (failover, resharding) looks owners up again rather than assuming them.
///
/// A TLS cluster (`tls:`) listens on TLS ports only and speaks TLS on its bus and replication links too
/// (`--tls-cluster yes --tls-replication yes`), as ElastiCache with encryption in transit does.
public final class LocalRedisCluster: Sendable {
    /// Every node, in creation order (`redis-cli` makes the first three the masters).
    public let nodes: [RedisServerProcess]
    /// The certificates of a TLS cluster; `nil` for plaintext.
    public let certificates: TestCertificates?

    /// The cluster every cluster test uses, started on first use.
    public static let shared = Task { try await LocalRedisCluster() }

    /// The TLS-only cluster the TLS cluster tests share, started on first use.
    public static let sharedTLS = Task { try await LocalRedisCluster(tls: try await TestCertificates.make()) }

    /// Starts the nodes, creates the cluster and waits until every slot is served and every master has a
    /// replica in sync.
    public init(masters: Int = 3, tls certificates: TestCertificates? = nil) async throws {
        self.certificates = certificates
        let listener: RedisServerProcess.Listener = certificates.map { .tls($0) } ?? .plaintext
        let tlsLinks = certificates == nil ? [] : ["--tls-cluster", "yes", "--tls-replication", "yes"]
        var nodes: [RedisServerProcess] = []
        for _ in 0..<(masters * 2) {
            nodes.append(try await RedisServerProcess(arguments: tlsLinks + [
                // the cluster bus port is the data port + 10000 unless named: beyond 65535 for high ephemeral ports
                "--cluster-port", String(try RedisServerProcess.freePort()),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                // a replica may always take over, however long ago it last heard from its master
                "--cluster-replica-validity-factor", "0",
            ], listener: listener))
        }
        self.nodes = nodes
        let create = try await ChildProcess.run(
            try Self.redisCLI(),
            arguments: ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "1", "--cluster-yes"]
                + (certificates.map { ["--tls", "--cacert", $0.caFile] } ?? []))
        guard create.status == 0 else {
            throw TestSupportError("redis-cli --cluster create failed: \(create.output.suffix(2000)) \(create.errorOutput.suffix(2000))")
        }
        guard try await waitUntilHealthy(within: .seconds(30)) else {
            throw TestSupportError("the local Redis Cluster did not become healthy within 30 s")
        }
    }

    /// `redis://127.0.0.1:<port of the first node>` (`rediss://` for a TLS cluster): the seed a client is given.
    public var seedURL: String { nodes[0].url() }

    /// A configuration for `url` (the seed by default) that trusts a TLS cluster's CA.
    public func configuration(url: String? = nil) throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: url ?? seedURL)
        configuration.tls?.caFile = certificates?.caFile
        return configuration
    }

    /// The node listening on `port`.
    public func node(port: Int) -> RedisServerProcess? { nodes.first { $0.port == port } }

    /// Sends one command to one node (not routed: redirections come back as errors) and returns the reply.
    @discardableResult
    package func command(port: Int, _ arguments: [String]) async throws -> RedisReply {
        let client = try directClient(port: port)
        defer { _ = Task { await client.shutdown() } }
        return try await client.send(arguments)
    }

    /// A client of one node only (`cluster=off`): it sees that node's keys and its redirections as replies.
    public func directClient(port: Int) throws -> RedisClient {
        var configuration = try self.configuration(url: "\(certificates == nil ? "redis" : "rediss")://127.0.0.1:\(port)?cluster=off")
        configuration.timeouts.command = .seconds(2)
        return RedisClient(configuration: configuration)
    }

    /// The master ports and node ids serving each slot range, as the first live node reports them.
    public func slotOwners() async throws -> [(slots: ClosedRange<Int>, port: Int, id: String)] {
        for node in nodes {
            let client = try directClient(port: node.port)
            let reply = try? await client.send(["CLUSTER", "SLOTS"])
            await client.shutdown()
            guard let ranges = reply?.array else { continue }
            return ranges.compactMap { range in
                guard let parts = range.array, parts.count >= 3, let start = parts[0].integer, let end = parts[1].integer,
                      let master = parts[2].array, master.count >= 3, let port = master[1].integer, let id = master[2].string
                else { return nil }
                return (Int(start)...Int(end), Int(port), id)
            }
        }
        throw TestSupportError("no node of the local cluster answered CLUSTER SLOTS")
    }

    /// The port of the master that serves `slot` now.
    public func masterPort(ofSlot slot: Int) async throws -> Int {
        guard let owner = try await slotOwners().first(where: { $0.slots.contains(slot) }) else {
            throw TestSupportError("no master serves slot \(slot)")
        }
        return owner.port
    }

    /// Whether every node reports `cluster_state:ok`, all 16384 slots are served and every master has a
    /// replica whose link is up.
    public func isHealthy() async -> Bool {
        do {
            let owners = try await slotOwners()
            guard owners.reduce(0, { $0 + $1.slots.count }) == HashSlot.count else { return false }
            for node in nodes {
                let info = try await command(port: node.port, ["CLUSTER", "INFO"]).string ?? ""
                guard info.contains("cluster_state:ok") else { return false }
            }
            for port in Set(owners.map(\.port)) {
                let replication = try await command(port: port, ["INFO", "replication"]).string ?? ""
                guard replication.contains("connected_slaves:1"), replication.contains("state=online") else { return false }
            }
            return true
        } catch {
            return false
        }
    }

    /// Waits until `isHealthy()`, polling.
    public func waitUntilHealthy(within limit: Duration) async throws -> Bool {
        await eventually(within: limit) { await isHealthy() }
    }

    private static func redisCLI() throws -> URL {
        for directory in ["/usr/bin", "/usr/local/bin"] + (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) {
            let candidate = URL(fileURLWithPath: directory).appending(path: "redis-cli")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSupportError("redis-cli is not installed (apt-get install -y redis-tools)")
    }
}
