import ChildProcesses
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
        let what = "credential_process"
        let result: ChildProcessResult
        do {
            // stdout (the secret) is collected in a private file, never logged; stderr is this process's.
            result = try await ChildProcess.run(
                URL(fileURLWithPath: "/bin/sh"), arguments: ["-c", command], standardError: .inherited, timeout: timeout)
        } catch let error as ChildProcessError where error.code == .timedOut {
            throw CredentialsError(code: .processFailed, message: "\(what) did not finish within \(timeout)")
        } catch {
            throw CredentialsError(code: .processFailed, message: "\(what) could not be started", underlying: error)
        }
        guard result.status == 0 else {
            throw CredentialsError(code: .processFailed, message: "\(what) exited with status \(result.status)")
        }
        let data = result.standardOutput
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           (object["Version"] as? Int) != 1 {
            throw CredentialsError(code: .invalidResponse, message: "\(what) answered a Version other than 1")
        }
        return try CredentialsHTTP.decodeCredentialsJSON(data, what: what)
    }
}
