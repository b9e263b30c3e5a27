import Foundation
import QuotaKeeperRedis
import QuotaKeeperTestSupport
import Testing

@Suite("Redis client against the shared test server")
struct RedisClientTests {
    let client: RedisClient
    let tag: String

    init() throws {
        client = RedisClient(configuration: try TestRedis.configuration())
        tag = TestRedis.uniqueTag("client")
    }

    private func cleanUp() async throws {
        try await TestRedis.deleteKeys(matching: tag, using: client)
        await client.shutdown()
    }

    @Test("every reply type is decoded")
    func replyTypes() async throws {
        let key = "\(tag):k"
        #expect(try await client.send("PING") == .status("PONG"))
        #expect(try await client.send(["SET", key, "v"]) == .status("OK"))
        #expect(try await client.send(["GET", key]) == .bulkString(Array("v".utf8)))
        #expect(try await client.send(["INCRBY", "\(tag):n", "-42"]) == .integer(-42))
        #expect(try await client.send(["GET", "\(tag):missing"]) == .null)
        #expect(try await client.send(["SET", "\(tag):empty", ""]) == .status("OK"))
        #expect(try await client.send(["GET", "\(tag):empty"]) == .bulkString([]))
        let binary: [UInt8] = [0, 13, 10, 255, 0, 36, 42]
        _ = try await client.send(RedisCommand(bytes: [Array("SET".utf8), Array("\(tag):bin".utf8), binary]))
        #expect(try await client.send(["GET", "\(tag):bin"]) == .bulkString(binary))
        let nested = try await client.send(["EVAL", "return {1, {2, {'a', ''}}, {}, 'x'}", "0"])
        #expect(nested == .array([.integer(1), .array([.integer(2), .array([.bulkString(Array("a".utf8)), .bulkString([])])]), .array([]), .bulkString(Array("x".utf8))]))
        let withError = try await client.send(["EVAL", "return {1, redis.error_reply('BOOM inside')}", "0"])
        #expect(withError == .array([.integer(1), .error("BOOM inside")]))
        #expect(try await client.send(["LRANGE", "\(tag):nolist", "0", "-1"]) == .array([]))
        try await cleanUp()
    }

    @Test("an error reply is thrown as .serverError with Redis's message")
    func serverError() async throws {
        _ = try await client.send(["SET", "\(tag):s", "text"])
        let error = try await #require(throws: RedisError.self) { try await client.send(["INCR", "\(tag):s"]) }
        #expect(error.code == .serverError)
        #expect(error.message.contains("not an integer"))
        #expect(error.message.hasPrefix("INCR"))
        try await cleanUp()
    }

    @Test("pipelines keep order and keep error replies as values")
    func pipelineOrder() async throws {
        let replies = try await client.pipeline((0..<100).map { RedisCommand(["ECHO", "value-\($0)"]) } + [RedisCommand(["NOSUCHCOMMAND"])])
        #expect(replies.count == 101)
        for index in 0..<100 { #expect(replies[index].string == "value-\(index)") }
        #expect(replies[100].string?.contains("unknown command") == true)
        try await cleanUp()
    }

    @Test("1,000 concurrent callers each get their own reply")
    func noCrossTalk() async throws {
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<1000 {
                group.addTask {
                    let key = "\(tag):c:\(caller)"
                    let value = "caller-\(caller)-\(UUID().uuidString)"
                    _ = try await client.send(["SET", key, value])
                    let echoed = try await client.send(["ECHO", value]).string
                    let stored = try await client.send(["GET", key]).string
                    return echoed == value && stored == value ? 0 : 1
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        try await cleanUp()
    }

    @Test("scripts run by SHA and survive SCRIPT FLUSH")
    func scriptReload() async throws {
        let script = RedisScript(name: "test_incr", source: "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let loaded = try await client.send(["SCRIPT", "LOAD", script.source])
        #expect(loaded.string == script.sha1, "local SHA-1 must match Redis's")
        #expect(try await client.evalScript(script, keys: ["\(tag):x"], arguments: ["2"]) == .integer(2))
        _ = try await client.send(["SCRIPT", "FLUSH"])
        #expect(try await client.evalScript(script, keys: ["\(tag):x"], arguments: ["3"]) == .integer(5))
        let failing = RedisScript(name: "test_fail", source: "return redis.error_reply('LIMIT bad input')")
        let error = try await #require(throws: RedisError.self) { try await client.evalScript(failing, keys: [], arguments: []) }
        #expect(error.code == .serverError)
        #expect(error.message.contains("test_fail") && error.message.contains("LIMIT bad input"))
        try await cleanUp()
    }

    @Test("after shutdown, commands fail with .clientShutdown")
    func shutdown() async throws {
        await client.shutdown()
        let error = try await #require(throws: RedisError.self) { try await client.send("PING") }
        #expect(error.code == .clientShutdown)
    }
}
