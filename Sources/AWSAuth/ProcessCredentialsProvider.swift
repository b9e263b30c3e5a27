import Foundation

/// `credential_process` of the profile (`~/.aws/config` or `AWS_CONFIG_FILE`, then the shared credentials
/// file): a command run by `/bin/sh -c` whose stdout is `{"Version": 1, "AccessKeyId": ..., "SecretAccessKey":
/// ..., "SessionToken": ..., "Expiration": "ISO 8601"}`. Its stderr goes to this process's stderr, as in
/// the AWS CLI; its stdout is never logged.
public struct ProcessCredentialsProvider: AWSCredentialsProvider {
    /// The command line.
    public let command: String
    /// The longest the command may run.
    public let timeout: Duration

    /// Creates a provider for a command line.
    public init(command: String, timeout: Duration = .seconds(60)) {
        self.command = command
        self.timeout = timeout
    }

    /// The profile's `credential_process`, or nil when it has none (or neither file has the profile).
    public init?(profile: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
                 timeout: Duration = .seconds(60)) {
        let profile = profile ?? SharedCredentialsFileProvider.profileName(environment)
        for file in SharedCredentialsFileProvider.profileFiles(environment) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let command = SharedCredentialsFileProvider.parseINI(text)[profile]?["credential_process"], !command.isEmpty
            else { continue }
            self.init(command: command, timeout: timeout)
            return
        }
        return nil
    }

    public func credentials() async throws -> AWSCredentials {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("qk-credential-process-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: folder) }
        let outputURL = folder.appendingPathComponent("stdout")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil, attributes: [.posixPermissions: 0o600])
        let output = try FileHandle(forWritingTo: outputURL)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        let what = "credential_process"
        let status: Int32
        do {
            status = try await withThrowingTaskGroup(of: Int32?.self) { group in
                group.addTask {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
                        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                        do { try process.run() } catch { continuation.resume(throwing: error) }
                    }
                }
                let limit = timeout
                group.addTask {
                    try await Task.sleep(for: limit)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let status = first else {
                    kill(process.processIdentifier, SIGKILL)
                    throw CredentialsError(code: .processFailed, message: "\(what) did not finish within \(limit)")
                }
                return status
            }
        } catch let error as CredentialsError {
            throw error
        } catch {
            throw CredentialsError(code: .processFailed, message: "\(what) could not be started", underlying: error)
        }
        try? output.close()
        guard status == 0 else {
            throw CredentialsError(code: .processFailed, message: "\(what) exited with status \(status)")
        }
        let data = (try? Data(contentsOf: outputURL)) ?? Data()
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           (object["Version"] as? Int) != 1 {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered a Version other than 1")
        }
        return try CredentialsHTTP.decodeCredentialsJSON(data, what: what)
    }
}
