import AWSAuth
import Foundation
import Testing

/// Refresh before expiry, one refresh for many callers, and a failing refresh that no caller sees while the
/// current credentials are still valid.
@Suite("Caching credentials")
struct CachingCredentialsTests {
    /// Counts calls; answers after `delay` with credentials expiring `lifetime` after the call.
    final class CountingProvider: AWSCredentialsProvider {
        let calls = Locked(0)
        let failing = Locked(false)
        let delay: Duration
        let lifetime: TimeInterval
        init(delay: Duration, lifetime: TimeInterval) {
            self.delay = delay
            self.lifetime = lifetime
        }
        func credentials() async throws -> AWSCredentials {
            let call = calls.withLock { $0 += 1; return $0 }
            try await Task.sleep(for: delay)
            if failing.withLock({ $0 }) { throw CredentialsError(code: .accessDenied, message: "refused") }
            return AWSCredentials(accessKeyId: "ASIA\(call)", secretAccessKey: "s", sessionToken: "t",
                                  expiration: Date().addingTimeInterval(lifetime))
        }
    }

    @Test("200 concurrent callers share one refresh")
    func concurrentCallersShareOneRefresh() async throws {
        let provider = CountingProvider(delay: .milliseconds(200), lifetime: 3600)
        let cache = CachingCredentialsProvider(provider)
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<200 { group.addTask { try await cache.credentials().accessKeyId } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(ids == ["ASIA1"])
        #expect(provider.calls.withLock { $0 } == 1)
    }

    @Test("temporary credentials from the container endpoint are refreshed before expiry; no call waits or fails for it")
    func refreshBeforeExpiry() async throws {
        let served = Locked(0)
        let endpoint = try await StubCredentialsServer { _ in
            let count = served.withLock { $0 += 1; return $0 }
            return (200, credentialsJSON("ASIAROUND\(count)", expiresIn: 4))
        }
        let source = try #require(try ContainerCredentialsProvider(environment: [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url.absoluteString,
        ]))
        let cache = CachingCredentialsProvider(source, refreshBefore: .seconds(3), minimumValidity: .milliseconds(500))
        var seen: [String] = []
        let deadline = Date().addingTimeInterval(6)
        while Date() < deadline {
            let started = ContinuousClock.now
            let credentials = try await cache.credentials()  // never throws
            if served.withLock({ $0 }) > 1 {
                #expect(ContinuousClock.now - started < .milliseconds(100), "a refresh made a caller wait")
            }
            #expect(try #require(credentials.expiration) > Date(), "expired credentials handed out")
            if seen.last != credentials.accessKeyId { seen.append(credentials.accessKeyId) }
            try await Task.sleep(for: .milliseconds(50))
        }
        // 4 s credentials refreshed 3 s early: a new set about every second, in order, each fetched once.
        #expect(seen.count >= 4, "\(seen)")
        #expect(seen == (1...seen.count).map { "ASIAROUND\($0)" })
        #expect(served.withLock { $0 } <= seen.count + 1)
        await endpoint.stop()
    }

    @Test("a failing refresh is invisible while the credentials are valid, then reported")
    func failingRefresh() async throws {
        let provider = CountingProvider(delay: .zero, lifetime: 2)
        let cache = CachingCredentialsProvider(
            provider, refreshBefore: .milliseconds(1500), minimumValidity: .milliseconds(500), retryAfterFailure: .milliseconds(100))
        #expect(try await cache.credentials().accessKeyId == "ASIA1")
        provider.failing.withLock { $0 = true }
        try await Task.sleep(for: .milliseconds(700))  // inside the refresh window, still valid
        for _ in 0..<5 {
            #expect(try await cache.credentials().accessKeyId == "ASIA1")
            try await Task.sleep(for: .milliseconds(150))
        }
        #expect(provider.calls.withLock { $0 } >= 3)  // retried in the background after each pause
        try await Task.sleep(for: .milliseconds(800))  // now within minimumValidity of expiry
        await #expect { try await cache.credentials() } throws: { ($0 as? CredentialsError)?.code == .accessDenied }
        provider.failing.withLock { $0 = false }
        #expect(try await cache.credentials().expiration! > Date())
    }

    @Test("long-term keys are read again after their lifetime (a rotated file is picked up)")
    func longTermKeysReread() async throws {
        let file = try temporaryFile("[default]\naws_access_key_id = AKIAOLD\naws_secret_access_key = s\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let cache = CachingCredentialsProvider(SharedCredentialsFileProvider(path: file), lifetime: .milliseconds(300))
        #expect(try await cache.credentials().accessKeyId == "AKIAOLD")
        try Data("[default]\naws_access_key_id = AKIANEW\naws_secret_access_key = s\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(try await cache.credentials().accessKeyId == "AKIAOLD")
        try await Task.sleep(for: .milliseconds(400))
        #expect(try await cache.credentials().accessKeyId == "AKIANEW")
    }
}
