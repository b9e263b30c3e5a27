import Foundation

/// An AWS key pair, optionally with a session token. Its description never shows the secret or token.
public struct AWSCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The access key id (`AKIA...` / `ASIA...`).
    public var accessKeyId: String
    /// The secret access key.
    public var secretAccessKey: String
    /// The session token of temporary credentials.
    public var sessionToken: String?
    /// When temporary credentials stop working (nil: long-term keys).
    public var expiration: Date?

    /// Creates credentials.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    /// `AWSCredentials(accessKeyId: AKIA…, secret: <redacted>)`: only a prefix of the key id is shown.
    public var description: String {
        "AWSCredentials(accessKeyId: \(accessKeyId.prefix(4))…, secret: <redacted>\(sessionToken == nil ? "" : ", session token: <redacted>"))"
    }

    public var debugDescription: String { description }
}

/// A failure to find or read credentials.
public struct CredentialsError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }
        /// No provider had credentials.
        public static let notFound = Code(name: "notFound")
        /// The shared credentials file could not be read.
        public static let unreadableFile = Code(name: "unreadableFile")
        /// The profile is missing or lacks a key.
        public static let incompleteProfile = Code(name: "incompleteProfile")
        /// A credentials endpoint (STS, the container endpoint, IMDS) refused the request (for example 403).
        public static let accessDenied = Code(name: "accessDenied")
        /// A credentials endpoint could not be reached or did not answer in time.
        public static let endpointUnavailable = Code(name: "endpointUnavailable")
        /// A source answered something that is not credentials (malformed JSON or XML, a missing field).
        public static let invalidResponse = Code(name: "invalidResponse")
        /// `credential_process` failed: it could not start, exited non-zero or timed out.
        public static let processFailed = Code(name: "processFailed")
        /// A setting is refused (an untrusted container credentials URI, a bad role ARN file).
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
        /// The profile gets its credentials in a way this client does not implement: an assumed role
        /// (`role_arn` with `source_profile` or `credential_source`) or IAM Identity Center (`sso_session`,
        /// `sso_start_url`). The message names the setting, the profile and the file.
        public static let unsupportedProfile = Code(name: "unsupportedProfile")

        /// Codes that mean "this source is not set up here": the default chain goes on to the next source.
        /// Every other code stops the chain (a configured source that fails is reported, not skipped).
        public var meansNotConfigured: Bool { self == .notFound || self == .unreadableFile || self == .incompleteProfile }
    }

    /// What kind of failure.
    public var code: Code
    /// What was wrong (names files, profiles and variables; never values).
    public var message: String
    /// A lower-level error.
    public var underlying: (any Error & Sendable)?

    /// Creates an error.
    public init(code: Code, message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "CredentialsError.\(code): \(message)" }
}

/// Something that can produce credentials.
public protocol AWSCredentialsProvider: Sendable {
    /// Returns current credentials.
    /// - Throws: ``CredentialsError``.
    func credentials() async throws -> AWSCredentials
}

/// Always the same credentials.
public struct StaticCredentialsProvider: AWSCredentialsProvider {
    let value: AWSCredentials
    /// Creates a provider.
    public init(_ credentials: AWSCredentials) { value = credentials }
    public func credentials() async throws -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`.
public struct EnvironmentCredentialsProvider: AWSCredentialsProvider {
    let environment: [String: String]

    /// Creates a provider.
    /// - Parameter environment: The variables to read (the process environment by default).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func credentials() async throws -> AWSCredentials {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
              let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else {
            throw CredentialsError(code: .notFound,
                                   message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set")
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
    }
}

/// The shared credentials file (`~/.aws/credentials` or `AWS_SHARED_CREDENTIALS_FILE`), profile from
/// `AWS_PROFILE` (or `default`). Keys: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`.
public struct SharedCredentialsFileProvider: AWSCredentialsProvider {
    /// The file read.
    public let path: String
    /// The profile read.
    public let profile: String

    /// Creates a provider.
    /// - Parameters:
    ///   - profile: The profile; default `AWS_PROFILE`, else `default`.
    ///   - path: The file; default `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    ///   - environment: Where to read those variables (and `HOME`).
    public init(profile: String? = nil, path: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.profile = profile ?? Self.profileName(environment)
        self.path = path ?? Self.profileFiles(environment)[1]
    }

    /// `AWS_PROFILE`, else `default`.
    static func profileName(_ environment: [String: String]) -> String {
        environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    }

    /// The files profiles are read from, in the SDKs' order: the config file (`AWS_CONFIG_FILE`, else
    /// `~/.aws/config`), then the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`).
    static func profileFiles(_ environment: [String: String]) -> [String] {
        let home = environment["HOME"] ?? NSHomeDirectory()
        return [
            environment["AWS_CONFIG_FILE"] ?? "\(home)/.aws/config",
            environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "\(home)/.aws/credentials",
        ]
    }

    public func credentials() async throws -> AWSCredentials {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CredentialsError(code: .unreadableFile, message: "cannot read shared credentials file \(path)",
                                   underlying: error)
        }
        let sections = Self.parseINI(text)
        guard let section = sections[profile] else {
            throw CredentialsError(code: .incompleteProfile, message: "profile [\(profile)] not found in \(path)")
        }
        guard let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] else {
            throw CredentialsError(code: .incompleteProfile,
                                   message: "profile [\(profile)] in \(path) lacks aws_access_key_id or aws_secret_access_key")
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: section["aws_session_token"])
    }

    /// Sections of an INI file: `[name]` headers, `key = value` lines, `#` / `;` comments.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                var name = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("profile ") { name = String(name.dropFirst("profile ".count)).trimmingCharacters(in: .whitespaces) }
                current = name
                sections[name, default: [:]] = sections[name, default: [:]]
                continue
            }
            guard let current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current]?[key] = value
        }
        return sections
    }
}

/// A profile whose credentials come from a role to assume (`role_arn`) or from IAM Identity Center
/// (`sso_session`, `sso_start_url`), which this client does not implement. In the chain, right after the shared
/// credentials file: such a profile ends the search with `.unsupportedProfile` naming the setting, instead of
/// letting a later source (the container endpoint, IMDS) sign as another identity.
struct UnsupportedProfileProvider: AWSCredentialsProvider {
    static let unsupportedSettings = ["role_arn", "sso_session", "sso_start_url"]
    let profile: String
    let setting: String
    let file: String

    /// The provider when the profile (in the config file, then the shared credentials file) has one of
    /// `unsupportedSettings` and no `credential_process`; nil otherwise.
    init?(environment: [String: String]) {
        profile = SharedCredentialsFileProvider.profileName(environment)
        for file in SharedCredentialsFileProvider.profileFiles(environment) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                  let section = SharedCredentialsFileProvider.parseINI(text)[profile], section["credential_process"] == nil,
                  let setting = Self.unsupportedSettings.first(where: { section[$0] != nil })
            else { continue }
            self.setting = setting
            self.file = file
            return
        }
        return nil
    }

    func credentials() async throws -> AWSCredentials {
        let how = setting == "role_arn" ? "assuming a role (role_arn with source_profile or credential_source)" : "IAM Identity Center (SSO)"
        throw CredentialsError(
            code: .unsupportedProfile,
            message: "profile [\(profile)] in \(file) gets its credentials by \(how), which this client does not support (\(setting)): "
                + "select another profile whose credential_process is `aws configure export-credentials --profile \(profile) --format process`, or use the environment, web identity, the container endpoint or IMDS")
    }
}
