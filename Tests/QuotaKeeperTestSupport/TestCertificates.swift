import Foundation

/// Certificates made by `openssl` at test time (P-256 keys, valid two days) in a folder of their own:
/// a CA, a server certificate it signs for `localhost` and `127.0.0.1`, one it signs for another host only,
/// a client certificate it signs, and an unrelated CA nobody trusts.
public struct TestCertificates: Sendable {
    public let directory: URL
    public var caFile: String { path("ca.crt") }
    public var serverCertificate: String { path("server.crt") }
    public var serverKey: String { path("server.key") }
    /// Signed by the CA, but only for `elsewhere.example` (not `localhost` nor `127.0.0.1`).
    public var otherHostCertificate: String { path("otherhost.crt") }
    public var otherHostKey: String { path("otherhost.key") }
    public var clientCertificate: String { path("client.crt") }
    public var clientKey: String { path("client.key") }
    /// A CA that signed none of the above.
    public var untrustedCAFile: String { path("untrusted-ca.crt") }

    /// Makes every file with the `openssl` command line tool.
    public static func make() async throws -> TestCertificates {
        let base = ProcessInfo.processInfo.environment["QUOTAKEEPER_TEST_SERVERS_DIR"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory
        let directory = base.appending(path: "qk-certs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        try await certificates.makeCA("ca", name: "QuotaKeeper Test CA")
        try await certificates.makeCA("untrusted-ca", name: "Untrusted Test CA")
        try await certificates.makeLeaf("server", name: "localhost", alternativeNames: "DNS:localhost,IP:127.0.0.1", usage: "serverAuth")
        try await certificates.makeLeaf("otherhost", name: "elsewhere.example", alternativeNames: "DNS:elsewhere.example", usage: "serverAuth")
        try await certificates.makeLeaf("client", name: "quotakeeper-app", alternativeNames: "DNS:quotakeeper-app", usage: "clientAuth")
        return certificates
    }

    /// `redis-server` arguments for a TLS-only server on `port` with the server certificate (or another pair).
    ///
    /// The client pair is its certificate for the links it opens itself (replication, and the cluster bus,
    /// whose peers always require a client certificate).
    public func serverArguments(
        port: Int, certificate: String? = nil, key: String? = nil, requireClientCertificates: Bool = false
    ) -> [String] {
        [
            "--port", "0", "--tls-port", String(port),
            "--tls-cert-file", certificate ?? serverCertificate, "--tls-key-file", key ?? serverKey,
            "--tls-client-cert-file", clientCertificate, "--tls-client-key-file", clientKey,
            "--tls-ca-cert-file", caFile, "--tls-auth-clients", requireClientCertificates ? "yes" : "no",
        ]
    }

    private func path(_ name: String) -> String { directory.appending(path: name).path }

    private func makeCA(_ file: String, name: String) async throws {
        try await openssl([
            "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", path("\(file).key"), "-out", path("\(file).crt"), "-days", "2", "-subj", "/CN=\(name)",
        ])
    }

    private func makeLeaf(_ file: String, name: String, alternativeNames: String, usage: String) async throws {
        try await openssl([
            "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", path("\(file).key"), "-out", path("\(file).csr"), "-subj", "/CN=\(name)",
        ])
        let extensions = path("\(file).ext")
        try "subjectAltName=\(alternativeNames)\nextendedKeyUsage=\(usage)\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        try await openssl([
            "x509", "-req", "-in", path("\(file).csr"), "-CA", caFile, "-CAkey", path("ca.key"),
            "-set_serial", String(UInt32.random(in: 1...UInt32.max)), "-days", "2", "-out", path("\(file).crt"),
            "-extfile", extensions,
        ])
    }

    private func openssl(_ arguments: [String]) async throws {
        let result = try await ChildProcess.run(try Self.opensslPath(), arguments: arguments)
        guard result.status == 0 else {
            throw TestSupportError("openssl \(arguments.first ?? "") failed: \(result.errorOutput)")
        }
    }

    private static func opensslPath() throws -> URL {
        for directory in ["/usr/bin", "/usr/local/bin"] {
            let candidate = URL(fileURLWithPath: directory).appending(path: "openssl")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSupportError("openssl is not installed (apt-get install -y openssl)")
    }
}
