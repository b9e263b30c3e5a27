/// A command's arguments packed into one buffer, ready for `redisAppendCommandArgv`.
///
/// Packing happens in the caller's task, so the connection thread only hands pointers to hiredis.
package struct RedisCommand: Sendable, Hashable {
    /// Every argument's bytes, back to back.
    let packedArguments: [UInt8]
    /// The length of each argument in `packedArguments`.
    let argumentLengths: [Int]
    /// Which argument is the key a cluster routes this command by (`EVALSHA`: KEYS[1]); nil for keyless
    /// commands, which go to any master.
    package private(set) var keyIndex: Int?

    /// A command from text arguments, e.g. `["HGET", "key", "field"]`.
    package init(_ arguments: [String]) {
        var packed: [UInt8] = []
        packed.reserveCapacity(arguments.reduce(0) { $0 + $1.utf8.count })
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            packed.append(contentsOf: argument.utf8)
            lengths.append(argument.utf8.count)
        }
        self.packedArguments = packed
        self.argumentLengths = lengths
        self.keyIndex = Self.inferredKeyIndex(packed, lengths)
    }

    /// A command from text arguments whose key is `arguments[keyIndex]` (nil: keyless), for commands the
    /// layer's table does not know.
    package init(_ arguments: [String], keyIndex: Int?) throws(RedisError) {
        if let keyIndex, !(1..<max(1, arguments.count)).contains(keyIndex) {
            throw RedisError(code: .invalidArgument, message: "key index \(keyIndex) is outside the command's arguments")
        }
        self.init(arguments)
        self.keyIndex = keyIndex
    }

    /// A command from binary-safe arguments.
    package init(bytes arguments: [[UInt8]]) {
        self.packedArguments = arguments.flatMap { $0 }
        self.argumentLengths = arguments.map(\.count)
        self.keyIndex = Self.inferredKeyIndex(packedArguments, argumentLengths)
    }

    /// The command name (first argument), for logs and errors; never the arguments, which may be secrets.
    package var name: String {
        guard let length = argumentLengths.first else { return "" }
        return String(decoding: packedArguments.prefix(length), as: UTF8.self).uppercased()
    }
}
