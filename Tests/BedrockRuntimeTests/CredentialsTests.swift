import BedrockRuntime
import Foundation
import Testing

@Suite("AWS credentials")
struct CredentialsTests {
    static let file = """
    # comment
    [default]
    aws_access_key_id = AKIADEFAULT
    aws_secret_access_key = secret-default

    [profile analytics]
    aws_access_key_id=ASIAANALYTICS
    aws_secret_access_key=secret-analytics
    aws_session_token = token-analytics
    ; trailing comment
    [broken]
    aws_access_key_id = AKIABROKEN
    """

    func withFile<T>(_ body: (String) async throws -> T) async throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("credentials-\(UUID().uuidString)").path
        try Data(Self.file.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await body(path)
    }

    @Test("environment variables, with and without a session token")
    func environment() async throws {
        let plain = try await EnvironmentCredentialsProvider(environment: [
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "secret-env",
        ]).credentials()
        #expect(plain == AWSCredentials(accessKeyId: "AKIAENV", secretAccessKey: "secret-env"))
        let session = try await EnvironmentCredentialsProvider(environment: [
            "AWS_ACCESS_KEY_ID": "ASIAENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_SESSION_TOKEN": "tok",
        ]).credentials()
        #expect(session.sessionToken == "tok")
        await #expect(throws: CredentialsError.self) {
            try await EnvironmentCredentialsProvider(environment: ["AWS_ACCESS_KEY_ID": "AKIAENV"]).credentials()
        }
    }

    @Test("the shared file honours AWS_PROFILE and AWS_SHARED_CREDENTIALS_FILE")
    func sharedFile() async throws {
        try await withFile { path in
            let byDefault = try await SharedCredentialsFileProvider(environment: ["AWS_SHARED_CREDENTIALS_FILE": path]).credentials()
            #expect(byDefault.accessKeyId == "AKIADEFAULT")
            #expect(byDefault.sessionToken == nil)
            let profiled = try await SharedCredentialsFileProvider(
                environment: ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": "analytics"]).credentials()
            #expect(profiled == AWSCredentials(accessKeyId: "ASIAANALYTICS", secretAccessKey: "secret-analytics",
                                               sessionToken: "token-analytics"))
            await #expect { try await SharedCredentialsFileProvider(profile: "broken", path: path).credentials() } throws: {
                ($0 as? CredentialsError)?.code == .incompleteProfile && "\($0)".contains("[broken]")
            }
            await #expect { try await SharedCredentialsFileProvider(profile: "nope", path: path).credentials() } throws: {
                ($0 as? CredentialsError)?.code == .incompleteProfile
            }
        }
    }

    @Test("the default chain prefers the environment, then the file, and names both when neither has keys")
    func chain() async throws {
        try await withFile { path in
            let fromFile = try await DefaultCredentialsChain(environment: ["AWS_SHARED_CREDENTIALS_FILE": path]).credentials()
            #expect(fromFile.accessKeyId == "AKIADEFAULT")
            let fromEnv = try await DefaultCredentialsChain(environment: [
                "AWS_SHARED_CREDENTIALS_FILE": path, "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s",
            ]).credentials()
            #expect(fromEnv.accessKeyId == "AKIAENV")
        }
        await #expect { try await DefaultCredentialsChain(environment: ["AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/creds", "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"]).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .notFound && "\($0)".contains("/nonexistent/creds")
        }
    }

    @Test("descriptions never show the secret or the token")
    func redaction() {
        let credentials = AWSCredentials(accessKeyId: "ASIAEXAMPLE", secretAccessKey: "very-secret", sessionToken: "very-token")
        for text in ["\(credentials)", String(reflecting: credentials)] {
            #expect(!text.contains("very-secret"))
            #expect(!text.contains("very-token"))
            #expect(!text.contains("ASIAEXAMPLE"))
        }
    }
}
