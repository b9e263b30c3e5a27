/// Which argument of a command is its key, for routing in a cluster.
///
/// The table covers the commands this package and its tools send; any other command is treated as keyless
/// (sent to any master) unless the caller names its key with `RedisCommand(_:keyIndex:)`.
enum CommandKeys {
    /// The index (in the command's arguments, the name being 0) of the key a command is routed by, or nil.
    static func keyIndex(name: String, argumentCount: Int, numberOfKeys: () -> String?) -> Int? {
        if scriptCommands.contains(name) {
            // EVALSHA sha numkeys key1 ...: KEYS[1] decides; a script without keys is keyless.
            guard argumentCount > 3, let keys = numberOfKeys(), keys != "0" else { return nil }
            return 3
        }
        if keyAfterSubcommand.contains(name) { return argumentCount > 2 ? 2 : nil }
        if firstArgumentIsKey.contains(name) { return argumentCount > 1 ? 1 : nil }
        return nil
    }

    private static let scriptCommands: Set<String> = ["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"]

    /// `MEMORY USAGE key`, `OBJECT ENCODING key`, ...
    private static let keyAfterSubcommand: Set<String> = ["MEMORY", "OBJECT"]

    private static let firstArgumentIsKey: Set<String> = [
        // strings and keys
        "GET", "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "APPEND", "STRLEN", "INCR", "INCRBY",
        "INCRBYFLOAT", "DECR", "DECRBY", "SETRANGE", "GETRANGE", "MGET", "MSET", "DEL", "UNLINK", "EXISTS", "TOUCH",
        "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "EXPIRETIME", "PEXPIRETIME", "TTL", "PTTL", "PERSIST", "TYPE",
        "DUMP", "RESTORE", "COPY", "RENAME", "RENAMENX", "WATCH",
        // hashes
        "HGET", "HSET", "HSETNX", "HMSET", "HMGET", "HGETALL", "HDEL", "HEXISTS", "HINCRBY", "HINCRBYFLOAT", "HKEYS",
        "HVALS", "HLEN", "HSCAN", "HSTRLEN", "HRANDFIELD",
        // lists, sets, sorted sets, streams, HyperLogLog
        "LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LLEN", "LINDEX", "LSET", "LREM", "LTRIM",
        "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SCARD", "SSCAN",
        "ZADD", "ZREM", "ZSCORE", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZCARD", "ZCOUNT",
        "ZINCRBY", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZRANK", "ZREVRANK", "ZSCAN", "ZPOPMIN", "ZPOPMAX",
        "XADD", "XLEN", "XRANGE", "XREVRANGE", "XTRIM", "XDEL", "PFADD", "PFCOUNT",
    ]
}

extension RedisCommand {
    /// The bytes of argument `index`.
    func argument(_ index: Int) -> ArraySlice<UInt8> {
        let start = argumentLengths[..<index].reduce(0, +)
        return packedArguments[start..<(start + argumentLengths[index])]
    }

    static func inferredKeyIndex(_ packed: [UInt8], _ lengths: [Int]) -> Int? {
        guard let nameLength = lengths.first else { return nil }
        let name = String(decoding: packed.prefix(nameLength), as: UTF8.self).uppercased()
        return CommandKeys.keyIndex(name: name, argumentCount: lengths.count) {
            guard lengths.count > 2 else { return nil }
            let start = lengths[0] + lengths[1]
            return String(decoding: packed[start..<(start + lengths[2])], as: UTF8.self)
        }
    }
}

extension RedisCommand {
    /// The cluster slot of the command's key, or nil for a keyless command.
    var slot: Int? { keyIndex.map { HashSlot.slot(of: argument($0)) } }
}
