import AWSAuth
import Foundation
@testable import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Synchronization
import Testing

/// The router's pure parts: slots, key positions, `CLUSTER SLOTS` and redirection parsing, backoff.
@Suite("Cluster routing rules")
struct ClusterRoutingRuleTests {
    @Test("CRC16/XMODEM and key slots match the Redis Cluster specification's vectors")
    func slotVectors() {
        #expect(HashSlot.crc16(Array("123456789".utf8)[...]) == 0x31C3)  // the spec's check value
        #expect(HashSlot.slot(of: "123456789") == 0x31C3 & 16383)
        #expect(HashSlot.slot(of: "foo") == 12182)
        #expect(HashSlot.slot(of: "bar") == 5061)
        #expect(HashSlot.slot(of: "") == 0)
        // hash tags, as in the specification's examples
        #expect(HashSlot.slot(of: "{user1000}.following") == HashSlot.slot(of: "{user1000}.followers"))
        #expect(HashSlot.slot(of: "{user1000}.following") == HashSlot.slot(of: "user1000"))
        #expect(HashSlot.slot(of: "foo{}{bar}") == Int(HashSlot.crc16(Array("foo{}{bar}".utf8)[...]) & 16383))
        #expect(HashSlot.slot(of: "foo{{bar}}zap") == HashSlot.slot(of: "{bar"))
        #expect(HashSlot.slot(of: "foo{bar}{zap}") == HashSlot.slot(of: "bar"))
        #expect(HashSlot.slot(of: "quotakeeper:{m@r}:ledger") == HashSlot.slot(of: "quotakeeper:{m@r}:leases"))
    }

    @Test("commands name their key: EVALSHA KEYS[1], the first argument, MEMORY USAGE's third; others are keyless")
    func keyPositions() throws {
        #expect(RedisCommand(["EVALSHA", "abc", "2", "k1", "k2", "arg"]).keyIndex == 3)
        #expect(RedisCommand(["evalsha", "abc", "0", "arg"]).keyIndex == nil)
        #expect(RedisCommand(["HGET", "h", "f"]).keyIndex == 1)
        #expect(RedisCommand(bytes: [Array("get".utf8), Array("k".utf8)]).keyIndex == 1)
        #expect(RedisCommand(["MEMORY", "USAGE", "k"]).keyIndex == 2)
        #expect(RedisCommand(["PING"]).keyIndex == nil)
        #expect(RedisCommand(["SCAN", "0"]).keyIndex == nil)
        #expect(RedisCommand(["SCRIPT", "LOAD", "return 1"]).keyIndex == nil)
        #expect(try RedisCommand(["BF.ADD", "filter", "x"], keyIndex: 1).keyIndex == 1)
        #expect(throws: RedisError.self) { try RedisCommand(["GET", "k"], keyIndex: 2) }
        let command = RedisCommand(["EVALSHA", "abc", "1", "q:{b@r}:ledger"])
        #expect(command.slot == HashSlot.slot(of: "b@r"))
    }

    @Test("CLUSTER SLOTS replies become slot ranges; an empty host is the answering node's")
    func topologyParsing() throws {
        func node(_ host: String, _ port: Int64) -> RedisReply {
            .array([.bulkString(Array(host.utf8)), .integer(port), .bulkString(Array("id".utf8))])
        }
        let reply = RedisReply.array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7000), node("127.0.0.1", 7003)]),
            .array([.integer(5461), .integer(10922), node("", 7001)]),
            .array([.integer(10923), .integer(16383), node("?", 7002)]),
        ])
        let topology = try ClusterTopology(slotsReply: reply, askedHost: "10.0.0.9")
        #expect(topology.ranges.map(\.slots) == [0...5460, 5461...10922])
        #expect(topology.masters == [.tcp(host: "127.0.0.1", port: 7000), .tcp(host: "10.0.0.9", port: 7001)])
        #expect(throws: RedisError.self) { try ClusterTopology(slotsReply: .array([.array([.integer(5)])]), askedHost: "h") }
        #expect(throws: RedisError.self) { try ClusterTopology(slotsReply: .status("OK"), askedHost: "h") }
    }

    @Test("MOVED, ASK, TRYAGAIN, CLUSTERDOWN and READONLY replies are recognised; other errors are not")
    func redirections() {
        #expect(ClusterRedirection(errorMessage: "MOVED 3999 127.0.0.1:6381", askedHost: "h") == .moved(slot: 3999, to: .tcp(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRedirection(errorMessage: "ASK 3999 :6381", askedHost: "h") == .ask(slot: 3999, to: .tcp(host: "h", port: 6381)))
        #expect(ClusterRedirection(errorMessage: "MOVED 1 [::1]:7000", askedHost: "h") == .moved(slot: 1, to: .tcp(host: "::1", port: 7000)))
        #expect(ClusterRedirection(errorMessage: "TRYAGAIN Multiple keys request during rehashing of slot", askedHost: "h") == .tryAgain)
        #expect(ClusterRedirection(errorMessage: "CLUSTERDOWN The cluster is down", askedHost: "h") == .clusterDown)
        #expect(ClusterRedirection(errorMessage: "READONLY You can't write against a read only replica.", askedHost: "h") == .readOnly)
        #expect(ClusterRedirection(errorMessage: "MOVED 99999 h:1", askedHost: "h") == nil)
        #expect(ClusterRedirection(errorMessage: "ERR wrong number of arguments", askedHost: "h") == nil)
    }

    @Test("retry pauses use full jitter under a cap that doubles per attempt up to 250 ms")
    func backoff() {
        #expect(ClusterBackoff.nanoseconds(attempt: 1, random: 0.999) < 10_000_000)
        #expect(ClusterBackoff.nanoseconds(attempt: 3, random: 0.5) == 20_000_000)
        #expect(ClusterBackoff.nanoseconds(attempt: 30, random: 0.999) < 250_000_000)
        #expect(ClusterBackoff.nanoseconds(attempt: 30, random: 0) == 0)
    }

    @Test("the URL's cluster option is parsed; an unknown value is refused")
    func urlOption() throws {
        #expect(try RedisConfiguration(url: "redis://h:1").cluster == .auto)
        #expect(try RedisConfiguration(url: "redis://h:1?cluster=on").cluster == .on)
        #expect(try RedisConfiguration(url: "redis://h:1/0?cluster=OFF").cluster == .off)
        let error = try #require(throws: RedisError.self) { try RedisConfiguration(url: "redis://h:1?cluster=maybe") }
        #expect(error.code == .invalidURL)
    }
}

/// The two local clusters the routing tests run against: plaintext, and TLS-only with TLS bus and replication.
enum ClusterTransport: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case plaintext, tls

    var cluster: LocalRedisCluster {
        get async throws {
            switch self {
            case .plaintext: try await LocalRedisCluster.shared.value
            case .tls: try await LocalRedisCluster.sharedTLS.value
            }
        }
    }

    var testDescription: String { rawValue }
}

/// The router against real 3-master + 3-replica clusters (`LocalRedisCluster.shared` and `.sharedTLS`).
@Suite("Redis Cluster", .serialized)
struct RedisClusterTests {
    private func clusterClient(_ cluster: LocalRedisCluster, commandTimeout: Duration = .seconds(2)) throws -> RedisClient {
        var configuration = try cluster.configuration()
        configuration.timeouts.command = commandTimeout
        return RedisClient(configuration: configuration)
    }

    /// A unique hash tag whose slot a master other than the seed serves, and that master's port.
    private func tagOwnedElsewhere(_ cluster: LocalRedisCluster) async throws -> (tag: String, port: Int) {
        let owners = try await cluster.slotOwners()
        while true {
            let tag = "qk-cluster-\(UUID().uuidString.prefix(12))"
            let slot = HashSlot.slot(of: tag)
            if let owner = owners.first(where: { $0.slots.contains(slot) }), owner.port != cluster.nodes[0].port {
                return (tag, owner.port)
            }
        }
    }

    @Test("slots computed by the client equal the server's CLUSTER KEYSLOT")
    func slotsMatchTheServer() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let direct = try cluster.directClient(port: cluster.nodes[0].port)
        for key in ["", "a", "foo", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "quotakeeper:{m@us-east-1}:ledger"]
            + (0..<200).map({ _ in UUID().uuidString }) {
            #expect(try await direct.send(["CLUSTER", "KEYSLOT", key]).integer == Int64(HashSlot.slot(of: key)))
        }
        await direct.shutdown()
    }

    @Test("given the seed only, a command reaches the master that owns its key's slot; keyless ones work",
          arguments: ClusterTransport.allCases)
    func routesToTheOwner(over transport: ClusterTransport) async throws {
        let cluster = try await transport.cluster
        let (tag, port) = try await tagOwnedElsewhere(cluster)
        let client = try clusterClient(cluster)
        let key = "{\(tag)}:k"
        #expect(try await client.send(["SET", key, "v1"]) == .status("OK"))
        #expect(try await client.send(["GET", key]).string == "v1")
        #expect(try await client.send("PING") == .status("PONG"))
        #expect(try await client.send("TIME").array?.count == 2)

        let owner = try cluster.directClient(port: port)
        #expect(try await owner.send(["GET", key]).string == "v1")
        let seed = try cluster.directClient(port: cluster.nodes[0].port)
        let moved = try await #require(throws: RedisError.self) { try await seed.send(["GET", key]) }
        #expect(moved.message.contains("MOVED"))

        // a pipeline across shards (shards run concurrently) answers in order, and keeps each slot's commands in order
        let (other, _) = try await tagOwnedElsewhere(cluster)
        let replies = try await client.pipeline([
            RedisCommand(["SET", "{\(other)}:k", "v2"]), RedisCommand(["GET", key]), RedisCommand(["GET", "{\(other)}:k"]),
            RedisCommand(["APPEND", key, "+"]), RedisCommand(["GET", key]),
        ])
        #expect(replies == [
            .status("OK"), .bulkString(Array("v1".utf8)), .bulkString(Array("v2".utf8)), .integer(3), .bulkString(Array("v1+".utf8)),
        ])
        _ = try await client.send(["DEL", key])
        _ = try await client.send(["DEL", "{\(other)}:k"])
        for closing in [client, owner, seed] { await closing.shutdown() }
    }

    @Test("cluster=on refuses a server without cluster support; auto treats it as one node")
    func detection() async throws {
        let standalone = try RedisClient(configuration: RedisConfiguration(url: TestRedis.url + "?cluster=on"))
        let error = try await #require(throws: RedisError.self) { try await standalone.send("PING") }
        #expect(error.code == .invalidArgument)
        await standalone.shutdown()
        let auto = try RedisClient(configuration: RedisConfiguration(url: TestRedis.url))
        #expect(try await auto.send("PING") == .status("PONG"))
        await auto.shutdown()
    }

    @Test("scan(match:) returns the matching keys of every master")
    func scanEveryShard() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let client = try clusterClient(cluster)
        let prefix = "qk-scan-\(UUID().uuidString.prefix(8)):"
        let keys = (0..<60).map { "\(prefix){\($0)}" }
        for key in keys { _ = try await client.send(["SET", key, "1"]) }
        let ports = Set(try await keys.asyncMap { try await cluster.masterPort(ofSlot: HashSlot.slot(of: $0)) })
        #expect(ports.count == 3)
        #expect(try await client.scan(match: prefix + "*") == keys.sorted())
        try await TestRedis.deleteKeys(matching: prefix, using: client)
        #expect(try await client.scan(match: prefix + "*").isEmpty)
        await client.shutdown()
    }

    @Test("a script cache flushed on one master is reloaded there, invisibly to the caller")
    func scriptCacheLossOnOneNode() async throws {
        let cluster = try await LocalRedisCluster.shared.value
        let (tag, port) = try await tagOwnedElsewhere(cluster)
        let client = try clusterClient(cluster)
        let script = RedisScript(name: "incr", source: "return redis.call('INCR', KEYS[1]) -- \(tag)")
        let key = "{\(tag)}:counter"
        #expect(try await client.evalScript(script, keys: [key], arguments: []) == .integer(1))
        let owner = try cluster.directClient(port: port)
        _ = try await owner.send(["SCRIPT", "FLUSH"])
        #expect(try await owner.send(["SCRIPT", "EXISTS", script.sha1]) == .array([.integer(0)]))
        #expect(try await client.evalScript(script, keys: [key], arguments: []) == .integer(2))
        #expect(try await owner.send(["SCRIPT", "EXISTS", script.sha1]) == .array([.integer(1)]))
        // loadScript reaches every master
        let other = RedisScript(name: "other", source: "return 7 -- \(tag)")
        try await client.loadScript(other)
        for owner in Set(try await cluster.slotOwners().map(\.port)) {
            #expect(try await cluster.command(port: owner, ["SCRIPT", "EXISTS", other.sha1]) == .array([.integer(1)]))
        }
        _ = try await client.send(["DEL", key])
        await owner.shutdown()
        await client.shutdown()
    }

    @Test("during a slot migration: ASK reaches moved keys, TRYAGAIN is retried, MOVED follows the new owner",
          arguments: ClusterTransport.allCases)
    func migrationRedirections(over transport: ClusterTransport) async throws {
        let cluster = try await transport.cluster
        let (tag, sourcePort) = try await tagOwnedElsewhere(cluster)
        let owners = try await cluster.slotOwners()
        let slot = HashSlot.slot(of: tag)
        let source = try #require(owners.first { $0.slots.contains(slot) })
        let target = try #require(owners.first { $0.port != sourcePort })
        let client = try clusterClient(cluster, commandTimeout: .seconds(5))
        let keys = (0..<10).map { "{\(tag)}:\($0)" }
        for key in keys { _ = try await client.send(["SET", key, key]) }

        _ = try await cluster.command(port: target.port, ["CLUSTER", "SETSLOT", String(slot), "IMPORTING", source.id])
        _ = try await cluster.command(port: source.port, ["CLUSTER", "SETSLOT", String(slot), "MIGRATING", target.id])
        _ = try await cluster.command(port: source.port, ["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS"] + Array(keys[..<5]))
        // moved keys answer ASK at the source; the client follows with ASKING
        for key in keys { #expect(try await client.send(["GET", key]).string == key) }
        // a new key of a migrating slot is created on the importing node
        _ = try await client.send(["SET", "{\(tag)}:new", "n"])
        let targetClient = try cluster.directClient(port: target.port)
        // keys split between the nodes: TRYAGAIN until the migration ends
        let split = Task { try await client.send(["MGET", keys[0], keys[9]]) }
        try await Task.sleep(for: .milliseconds(300))
        _ = try await cluster.command(port: source.port, ["MIGRATE", "127.0.0.1", String(target.port), "", "0", "5000", "KEYS"] + Array(keys[5...]))
        // as redis-cli --cluster reshard does: the importing node first, then the source, then the others
        for owner in [target.port, source.port] + Set(owners.map(\.port)).subtracting([target.port, source.port]) {
            _ = try await cluster.command(port: owner, ["CLUSTER", "SETSLOT", String(slot), "NODE", target.id])
        }
        #expect(try await split.value == .array([.bulkString(Array(keys[0].utf8)), .bulkString(Array(keys[9].utf8))]))
        // the slot now lives on the target: MOVED is followed and learnt
        for key in keys { #expect(try await client.send(["GET", key]).string == key) }
        #expect(try await targetClient.send(["GET", "{\(tag)}:new"]).string == "n")
        #expect(try await cluster.masterPort(ofSlot: slot) == target.port)
        _ = try await client.send(["DEL"] + keys)
        _ = try await client.send(["DEL", "{\(tag)}:new"])
        await targetClient.shutdown()
        await client.shutdown()
    }
}


extension RedisClusterTests {
    @Test("IAM over TLS: every master's connections AUTH as the user with the token the client signs, and again after a refresh")
    func iamAuthenticationOnEveryMaster() async throws {
        let cluster = try await ClusterTransport.tls.cluster
        let user = "qk-iam-\(UUID().uuidString.prefix(8).lowercased())"
        let token = ElastiCacheIAMToken(userID: user, cacheName: "quota-ledger", region: "eu-west-1")
        let credentials = AWSCredentials(
            accessKeyId: "ASIACLUSTER", secretAccessKey: "cluster-secret", sessionToken: "cluster-token",
            expiration: Date().addingTimeInterval(3600))
        // a fixed clock makes the token predictable: each node's ACL user accepts exactly the token signed at it
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        func acceptOnly(tokenAt date: Date) async throws {
            for node in cluster.nodes {
                try await cluster.command(port: node.port, [
                    "ACL", "SETUSER", user, "on", "resetpass", ">" + token.token(credentials: credentials, date: date), "~*", "+@all",
                ])
            }
        }
        func statistic(_ name: String, section: String, port: Int) async throws -> Int {
            let info = try await cluster.command(port: port, ["INFO", section]).string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix(name) } ?? ""
            let value = line.split(separator: ":").last?.split(separator: ",").first?.split(separator: "=").last ?? "0"
            return Int(value) ?? 0
        }
        try await acceptOnly(tokenAt: clock.withLock { $0 })

        var configuration = try cluster.configuration()
        configuration.pool.connections = 1
        var iam = RedisConfiguration.IAMAuthentication(token: token, credentials: StaticCredentialsProvider(credentials))
        iam.reauthenticateAfter = .milliseconds(300)
        iam.now = { clock.withLock { $0 } }
        configuration.auth = .iam(iam)
        let client = RedisClient(configuration: configuration)

        let owners = try await cluster.slotOwners()
        var tagOfMaster: [Int: String] = [:]
        while tagOfMaster.count < Set(owners.map(\.port)).count {
            let tag = "qk-iam-\(UUID().uuidString.prefix(12))"
            if let owner = owners.first(where: { $0.slots.contains(HashSlot.slot(of: tag)) }), tagOfMaster[owner.port] == nil {
                tagOfMaster[owner.port] = tag
            }
        }
        var authCalls: [Int: Int] = [:]
        for (port, tag) in tagOfMaster {
            #expect(try await client.send(["SET", "{\(tag)}:k", "v"]) == .status("OK"))
            let clients = try await cluster.command(port: port, ["CLIENT", "LIST"]).string ?? ""
            #expect(clients.contains("user=\(user) "), "master \(port) has a connection authenticated as the IAM user")
            authCalls[port] = try await statistic("cmdstat_auth:", section: "commandstats", port: port)
            #expect(authCalls[port, default: 0] >= 1)
        }

        // a later token: the nodes now accept only it; connections AUTH again with it once due
        clock.withLock { $0 += 600 }
        try await acceptOnly(tokenAt: clock.withLock { $0 })
        try await Task.sleep(for: .milliseconds(400))
        for (port, tag) in tagOfMaster {
            #expect(try await client.send(["GET", "{\(tag)}:k"]).string == "v")
            #expect(try await statistic("cmdstat_auth:", section: "commandstats", port: port) > authCalls[port, default: 0],
                    "master \(port) saw AUTH again")
            #expect(try await statistic("acl_access_denied_auth:", section: "stats", port: port) == 0,
                    "no connection to master \(port) offered a stale or wrong token")
            _ = try await client.send(["DEL", "{\(tag)}:k"])
        }
        await client.shutdown()
        for node in cluster.nodes { try await cluster.command(port: node.port, ["ACL", "DELUSER", user]) }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
