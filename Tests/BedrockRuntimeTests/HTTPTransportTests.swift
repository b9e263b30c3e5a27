import AsyncHTTPClient
import BedrockErrors
import BedrockRuntime
import BedrockSimulator
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP transport (async-http-client) against loopback stand-ins: the connect, read and total timeouts
/// exact to the millisecond, the connection pool's limit and what a call waiting for it sees, cancellation,
/// and the client's lifecycle.
@Suite("Bedrock client transport: timeouts, pool, cancellation, lifecycle")
struct HTTPTransportTests {
    static let model = "anthropic.claude-sonnet-4-20250514-v1:0"
    /// A model whose answer starts after `ms` milliseconds.
    static func slow(_ ms: Double) -> ModelProfile { ModelProfile(timeToFirstTokenMs: ms, outputTokensPerSecond: 1_000_000) }

    /// Runs `attempt` and returns the BedrockError it threw and how long it took.
    static func timed(_ attempt: () async throws -> Void) async -> (BedrockError?, Duration) {
        let started = ContinuousClock.now
        do {
            try await attempt()
            return (nil, .now - started)
        } catch {
            return (error as? BedrockError ?? BedrockError(kind: .unknown, message: "unexpected \(type(of: error))"), .now - started)
        }
    }

    @Test("the read timeout ends a silent call at its millisecond value as timeout (not rounded to a second)")
    func readTimeout() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.slow(3_000) },
                                client: { $0.timeouts = .init(idle: .milliseconds(300), total: .seconds(20)) }) { _, client in
            let (error, elapsed) = await Self.timed { _ = try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10)) }
            #expect(error?.kind == .timeout && error?.source == .transport, "\(String(describing: error))")
            #expect(error?.underlying as? HTTPClientError == .readTimeout)
            #expect(elapsed >= .milliseconds(280) && elapsed < .milliseconds(950), "\(elapsed)")
        }
    }

    @Test("the caller's deadline ends a call at that instant as timeout, before the total timeout")
    func callerDeadline() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.slow(3_000) }) { _, client in
            let (error, elapsed) = await Self.timed {
                _ = try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10), deadline: .now + .milliseconds(350))
            }
            #expect(error?.kind == .timeout && error?.source == .transport, "\(String(describing: error))")
            #expect(elapsed >= .milliseconds(330) && elapsed < .milliseconds(950), "\(elapsed)")
            // A stream's deadline bounds the whole stream, not only its first byte.
            let (streamError, streamElapsed) = await Self.timed {
                let events = try await client.converseStream(
                    modelId: Self.model, request: prompt(maxTokens: 1_000, forcedOutput: 600), deadline: .now + .milliseconds(600))
                for try await _ in events {}
            }
            #expect(streamError?.kind == .timeout, "\(String(describing: streamError))")
            #expect(streamElapsed < .seconds(2), "\(streamElapsed)")
        } 
    }

    @Test("a connect that gets no answer ends at the connect timeout as timeout")
    func connectTimeout() async throws {
        let listener = try FullBacklogListener()
        defer { listener.close() }
        var configuration = BedrockRuntimeConfiguration(region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:\(listener.port)")!)
        configuration.credentials = StaticCredentialsProvider(testCredentials)
        configuration.timeouts = .init(connect: .milliseconds(300), idle: .seconds(10), total: .seconds(20))
        let client = BedrockRuntimeClient(configuration: configuration)
        let (error, elapsed) = await Self.timed { _ = try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10)) }
        #expect(error?.kind == .timeout && error?.source == .transport, "\(String(describing: error))")
        #expect(error?.message.contains("could not connect") == true, "\(String(describing: error))")
        #expect(elapsed >= .milliseconds(280) && elapsed < .milliseconds(1_500), "\(elapsed)")
        try await client.shutdown()
    }

    @Test("with every pooled connection busy, a call waits up to the connect timeout, then fails as too-many-connections; the busy call is unharmed")
    func poolExhaustion() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.slow(1_500) }, client: {
            $0.pool.maxConnectionsPerHost = 1
            $0.timeouts = .init(connect: .milliseconds(300), idle: .seconds(10), total: .seconds(20))
        }) { _, client in
            let busy = Task { try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10, forcedOutput: 3)) }
            try await Task.sleep(for: .milliseconds(200))
            let (error, elapsed) = await Self.timed { _ = try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10)) }
            #expect(error?.kind == .tooManyConnections && error?.source == .transport, "\(String(describing: error))")
            #expect(error?.kind.isRetryable == true && error?.kind.countsAsBreakerFailure == false)
            #expect(error?.message.contains("maxConnectionsPerHost") == true)
            #expect(elapsed >= .milliseconds(280) && elapsed < .milliseconds(1_200), "\(elapsed)")
            #expect(try await busy.value.usage.outputTokens == 3)
        }
    }

    @Test("the pool caps concurrent connections: 8 calls through 2 connections to a server that refuses a third all succeed")
    func poolQueuesWithinItsSize() async throws {
        try await withSimulator(configure: {
            $0.defaultModel = Self.slow(100)
            $0.maxConcurrentConnections = 2
        }, client: { $0.pool.maxConnectionsPerHost = 2 }) { simulator, client in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10, forcedOutput: 2)).usage.outputTokens }
                }
                for try await tokens in group { #expect(tokens == 2) }
            }
            let totals = await simulator.stats().models[Self.model]?.totals
            #expect(totals?.completed == 8)
            #expect(totals?.tooManyConnections == 0)
        }
    }

    @Test("cancelling a call's task cancels its request at once")
    func cancellation() async throws {
        try await withSimulator(configure: { $0.defaultModel = Self.slow(5_000) }) { _, client in
            let call = Task { try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10)) }
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            call.cancel()
            let result = await call.result
            #expect(ContinuousClock.now - started < .milliseconds(500))
            #expect(throws: CancellationError.self) { try result.get() }
        }
    }

    @Test("shutdown closes the client's own HTTPClient (later calls fail as connection-failed) and leaves a shared one running")
    func lifecycle() async throws {
        let shared = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                                configuration: BedrockRuntimeConfiguration(region: "us-east-1").httpClientConfiguration)
        try await withSimulator(configure: { _ in }) { simulator, client in
            var configuration = client.configuration
            configuration.endpoint = client.configuration.endpoint
            let borrowing = BedrockRuntimeClient(configuration: configuration, httpClient: shared)
            try await client.shutdown()
            try await client.shutdown()  // again: nothing
            let (error, _) = await Self.timed { _ = try await client.converse(modelId: Self.model, request: prompt(maxTokens: 10)) }
            #expect(error?.kind == .connectionFailed, "\(String(describing: error))")
            try await borrowing.shutdown()  // not its client: still up
            #expect(try await borrowing.converse(modelId: Self.model, request: prompt(maxTokens: 10, forcedOutput: 1)).usage.outputTokens == 1)
            _ = simulator
        }
        try await shared.shutdown()
    }
}

/// A loopback listener whose accept queue is full, so the kernel drops further connection attempts (SYNs):
/// a connect to it gets no answer, like one to a host behind a silent firewall.
final class FullBacklogListener {
    private var descriptors: [Int32] = []
    let port: Int

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        descriptors.append(listener)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 0) == 0
                && getsockname(listener, $0, &length) == 0 }
        }
        guard bound else { throw BedrockError(kind: .unknown, message: "cannot listen on 127.0.0.1 (errno \(errno))") }
        port = Int(UInt16(bigEndian: address.sin_port))
        // One completed connection fills a backlog of 0; it stays unaccepted.
        let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        descriptors.append(filler)
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw BedrockError(kind: .unknown, message: "cannot fill the backlog (errno \(errno))") }
    }

    func close() {
        for descriptor in descriptors { _ = Glibc.close(descriptor) }
        descriptors = []
    }
}
