/// Which master serves which slots, as `CLUSTER SLOTS` describes it.
struct ClusterTopology: Equatable, Sendable {
    struct SlotRange: Equatable, Sendable {
        let slots: ClosedRange<Int>
        let master: RedisConfiguration.Endpoint
    }

    /// The ranges with a reachable master, in the order the node listed them.
    let ranges: [SlotRange]

    /// Every master that serves at least one slot, once each, in order of first appearance.
    var masters: [RedisConfiguration.Endpoint] {
        var seen = Set<RedisConfiguration.Endpoint>()
        return ranges.map(\.master).filter { seen.insert($0).inserted }
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replica...], ...]`.
    /// - Parameter askedHost: the host of the node that answered, for entries whose host is empty (a node
    ///   that does not know its own address names itself with "").
    /// - Throws: `RedisError` `.protocolError` if the reply does not have that shape.
    init(slotsReply reply: RedisReply, askedHost: String) throws(RedisError) {
        func malformed(_ why: String) -> RedisError {
            RedisError(code: .protocolError, message: "CLUSTER SLOTS answered an unexpected reply: \(why)")
        }
        guard let entries = reply.array else { throw malformed("not an array") }
        var ranges: [SlotRange] = []
        for entry in entries {
            guard let parts = entry.array, parts.count >= 3,
                  let start = parts[0].integer, let end = parts[1].integer,
                  0 <= start, start <= end, end < Int64(HashSlot.count)
            else { throw malformed("a slot range is not [start, end, master, ...]") }
            guard let node = parts[2].array, node.count >= 2, let host = node[0].string,
                  let port = node[1].integer, (1...65535).contains(port)
            else { throw malformed("a master is not [host, port, ...]") }
            if host == "?" { continue }  // the node knows no address for this master (yet)
            ranges.append(SlotRange(
                slots: Int(start)...Int(end), master: .tcp(host: host.isEmpty ? askedHost : host, port: Int(port))))
        }
        self.ranges = ranges
    }
}

/// What a cluster error reply asks the client to do.
enum ClusterRedirection: Equatable, Sendable {
    /// The slot lives on another master for good: update the map and send there.
    case moved(slot: Int, to: RedisConfiguration.Endpoint)
    /// The key is being migrated: send `ASKING` + the command to that node, once; the map stays.
    case ask(slot: Int, to: RedisConfiguration.Endpoint)
    /// A multi-key command during a slot's migration, keys split between the nodes: retry after a pause.
    case tryAgain
    /// The cluster or the slot's master is down (a failover is under way): retry after a pause.
    case clusterDown
    /// A replica answered a write (a former master after a failover): refresh the map and retry.
    case readOnly

    /// Parses an error reply's text, or nil for any other error.
    /// - Parameter askedHost: the host of the node that answered, for redirections with an empty host.
    init?(errorMessage message: String, askedHost: String) {
        if message.hasPrefix("MOVED ") || message.hasPrefix("ASK ") {
            let words = message.split(separator: " ")
            guard words.count == 3, let slot = Int(words[1]), (0..<HashSlot.count).contains(slot),
                  let colon = words[2].lastIndex(of: ":"), let port = Int(words[2][words[2].index(after: colon)...]),
                  (1...65535).contains(port)
            else { return nil }
            var host = String(words[2][..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let endpoint = RedisConfiguration.Endpoint.tcp(host: host.isEmpty ? askedHost : host, port: port)
            self = words[0] == "MOVED" ? .moved(slot: slot, to: endpoint) : .ask(slot: slot, to: endpoint)
        } else if message.hasPrefix("TRYAGAIN") {
            self = .tryAgain
        } else if message.hasPrefix("CLUSTERDOWN") || message.hasPrefix("MASTERDOWN") {
            self = .clusterDown
        } else if message.hasPrefix("READONLY") {
            self = .readOnly
        } else {
            return nil
        }
    }
}

/// The pause before a command is retried after `TRYAGAIN`, `CLUSTERDOWN` or an unreachable master.
enum ClusterBackoff {
    /// Full jitter: uniform in [0, min(250 ms, 10 ms x 2^(attempt-1))], given a uniform `random` in [0, 1).
    static func nanoseconds(attempt: Int, random: Double) -> UInt64 {
        let ceiling = min(250_000_000, 10_000_000 << UInt64(min(max(attempt - 1, 0), 10)))
        return UInt64(Double(ceiling) * min(max(random, 0), 1))
    }
}
