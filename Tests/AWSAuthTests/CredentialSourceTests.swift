import AWSAuth
import Foundation
import Testing

/// Each source of the chain against a loopback server speaking its documented wire format, incl. a 403.
@Suite("AWS credential sources")
struct CredentialSourceTests {
    @Test("web identity: the token file and role go to STS AssumeRoleWithWebIdentity; its XML answer is decoded; 403 is accessDenied")
    func webIdentity() async throws {
        let expiration = iso8601(secondsFromNow: 3600)
        let sts = try await StubCredentialsServer { request in
            guard request.body.contains("WebIdentityToken=oidc-token-1") else {
                return (403, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized</Message></Error></ErrorResponse>")
            }
            return (200, """
                <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
                  <AssumeRoleWithWebIdentityResult>
                    <Credentials>
                      <AccessKeyId>ASIAWEBIDENTITY</AccessKeyId>
                      <SecretAccessKey>web/secret+1</SecretAccessKey>
                      <SessionToken>web-session&amp;token</SessionToken>
                      <Expiration>\(expiration)</Expiration>
                    </Credentials>
                    <SubjectFromWebIdentityToken>system:serviceaccount:ns:app</SubjectFromWebIdentityToken>
                  </AssumeRoleWithWebIdentityResult>
                </AssumeRoleWithWebIdentityResponse>
                """)
        }
        let tokenFile = try temporaryFile("oidc-token-1\n")
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        let environment = [
            "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/quota-app",
            "AWS_ROLE_SESSION_NAME": "pod-1", "AWS_ENDPOINT_URL_STS": sts.url.absoluteString,
            "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
        let credentials = try await DefaultCredentialsChain(environment: environment).credentials()
        #expect(credentials.accessKeyId == "ASIAWEBIDENTITY")
        #expect(credentials.secretAccessKey == "web/secret+1")
        #expect(credentials.sessionToken == "web-session&token")
        #expect(abs((credentials.expiration?.timeIntervalSinceNow ?? 0) - 3600) < 5)
        let request = try #require(sts.requests.first)
        #expect(request.method == "POST")
        #expect(request.headers["content-type"]?.hasPrefix("application/x-www-form-urlencoded") == true)
        for field in ["Action=AssumeRoleWithWebIdentity", "Version=2011-06-15", "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fquota-app",
                      "RoleSessionName=pod-1", "WebIdentityToken=oidc-token-1"] {
            #expect(request.body.contains(field), "\(field) in \(request.body)")
        }
        #expect(request.headers["authorization"] == nil)  // the call is not signed

        try Data("stale-token".utf8).write(to: URL(fileURLWithPath: tokenFile))
        // A configured source that fails stops the chain (IMDS is not tried) and says why, without the token.
        await #expect { try await DefaultCredentialsChain(environment: environment).credentials() } throws: { error in
            let error = error as? CredentialsError
            return error?.code == .accessDenied && error?.message.contains("HTTP 403 (AccessDenied)") == true
                && error?.message.contains("stale-token") == false
        }
        await sts.stop()
    }

    @Test("container credentials: full URI on loopback with the token file's Authorization; 403 is accessDenied; plain HTTP elsewhere refused")
    func container() async throws {
        let responses = Locked(0)
        let endpoint = try await StubCredentialsServer { request in
            guard request.headers["authorization"] == "pod-identity-token" else { return (403, #"{"message":"denied"}"#) }
            let count = responses.withLock { $0 += 1; return $0 }
            return (200, credentialsJSON("ASIACONTAINER\(count)", expiresIn: 900))
        }
        let tokenFile = try temporaryFile("pod-identity-token\n")
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        var environment = [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url.appendingPathComponent("v1/credentials").absoluteString,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored-when-file-set",
            "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
        let credentials = try await DefaultCredentialsChain(environment: environment).credentials()
        #expect(credentials.accessKeyId == "ASIACONTAINER1")
        #expect(credentials.sessionToken == "token-ASIACONTAINER1")
        #expect(credentials.expiration != nil)
        #expect(endpoint.requests.first?.path == "/v1/credentials")
        #expect(endpoint.requests.first?.method == "GET")

        environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = nil
        await #expect { try await DefaultCredentialsChain(environment: environment).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .accessDenied && "\($0)".contains("HTTP 403")
        }
        environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://198.51.100.7/creds"
        await #expect { try await DefaultCredentialsChain(environment: environment).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .invalidConfiguration
        }
        await endpoint.stop()
    }

    @Test("IMDSv2: a token PUT, then the role and its credentials with the token header; 403 is accessDenied")
    func instanceMetadata() async throws {
        let refuseToken = Locked(false)
        let imds = try await StubCredentialsServer { request in
            switch (request.method, request.path) {
            case ("PUT", "/latest/api/token"):
                if refuseToken.withLock({ $0 }) { return (403, "") }
                return request.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600" ? (200, "imds-session-token") : (400, "")
            case ("GET", _) where request.headers["x-aws-ec2-metadata-token"] != "imds-session-token":
                return (401, "")
            case ("GET", "/latest/meta-data/iam/security-credentials/"), ("GET", "/latest/meta-data/iam/security-credentials"):
                return (200, "quota-instance-role\n")
            case ("GET", "/latest/meta-data/iam/security-credentials/quota-instance-role"):
                return (200, credentialsJSON("ASIAIMDS", expiresIn: 6 * 3600))
            default:
                return (404, "")
            }
        }
        let environment = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url.absoluteString, "HOME": "/nonexistent"]
        let credentials = try await DefaultCredentialsChain(environment: environment).credentials()
        #expect(credentials.accessKeyId == "ASIAIMDS")
        #expect(credentials.secretAccessKey == "secret-ASIAIMDS")
        #expect(imds.requests.map(\.method) == ["PUT", "GET", "GET"])
        refuseToken.withLock { $0 = true }
        await #expect { try await DefaultCredentialsChain(environment: environment).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .accessDenied
        }
        await imds.stop()

        // Nothing listening: "not on EC2", one of the places the chain names.
        await #expect { try await DefaultCredentialsChain(environment: environment).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .notFound && "\($0)".contains("no EC2 instance metadata")
        }
        // Disabled: never contacted.
        await #expect { try await DefaultCredentialsChain(environment: ["AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"]).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .notFound && !"\($0)".contains("metadata")
        }
    }

    @Test("credential_process from the config file's profile: its JSON is decoded; a failing process is processFailed")
    func credentialProcess() async throws {
        let script = try temporaryFile("""
            #!/bin/sh
            if [ "$1" = fail ]; then echo 'no credentials for you' >&2; exit 3; fi
            printf '{"Version": 1, "AccessKeyId": "ASIAPROCESS", "SecretAccessKey": "process-secret", "SessionToken": "process-token", "Expiration": "%s"}' "$2"
            """, mode: 0o700)
        let expiry = iso8601(secondsFromNow: 1800)
        let config = try temporaryFile("""
            [default]
            region = us-east-1
            [profile tool]
            credential_process = \(script) ok \(expiry)
            [profile broken]
            credential_process = \(script) fail
            """)
        defer { for path in [script, config] { try? FileManager.default.removeItem(atPath: path) } }
        let base = ["AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
                    "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"]
        let credentials = try await DefaultCredentialsChain(environment: base.merging(["AWS_PROFILE": "tool"]) { $1 }).credentials()
        #expect(credentials.accessKeyId == "ASIAPROCESS")
        #expect(credentials.sessionToken == "process-token")
        #expect(credentials.expiration != nil)
        await #expect { try await DefaultCredentialsChain(environment: base.merging(["AWS_PROFILE": "broken"]) { $1 }).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .processFailed && "\($0)".contains("status 3")
        }
        // The default profile has no credential_process: not configured, the chain ends with notFound.
        await #expect { try await DefaultCredentialsChain(environment: base).credentials() } throws: {
            ($0 as? CredentialsError)?.code == .notFound
        }
    }

    @Test("a profile with role_arn + source_profile or SSO is unsupportedProfile, naming the setting; keys in the environment still win")
    func unsupportedProfiles() async throws {
        let config = try temporaryFile("""
            [profile base]
            region = us-east-1
            [profile deploy]
            role_arn = arn:aws:iam::123456789012:role/deploy
            source_profile = base
            [profile portal]
            sso_session = corp
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let base = ["AWS_CONFIG_FILE": config, "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
                    "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent"]
        for (profile, setting) in [("deploy", "role_arn"), ("portal", "sso_session")] {
            await #expect {
                try await DefaultCredentialsChain(environment: base.merging(["AWS_PROFILE": profile]) { $1 }).credentials()
            } throws: {
                ($0 as? CredentialsError)?.code == .unsupportedProfile && "\($0)".contains("[\(profile)]") && "\($0)".contains(setting)
            }
        }
        let withKeys = base.merging(["AWS_PROFILE": "deploy", "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret"]) { $1 }
        #expect(try await DefaultCredentialsChain(environment: withKeys).credentials().accessKeyId == "AKIAENV")
    }

    @Test("the chain's order: environment before the file before web identity before the container")
    func order() async throws {
        let file = try temporaryFile("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file-secret\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let endpoint = try await StubCredentialsServer { _ in (200, credentialsJSON("ASIACONTAINER", expiresIn: 900)) }
        var environment = [
            "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SHARED_CREDENTIALS_FILE": file,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": endpoint.url.absoluteString, "AWS_EC2_METADATA_DISABLED": "true",
        ]
        #expect(try await DefaultCredentialsChain(environment: environment).credentials().accessKeyId == "AKIAENV")
        environment["AWS_ACCESS_KEY_ID"] = nil
        #expect(try await DefaultCredentialsChain(environment: environment).credentials().accessKeyId == "AKIAFILE")
        environment["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/credentials"
        environment["HOME"] = "/nonexistent"
        #expect(try await DefaultCredentialsChain(environment: environment).credentials().accessKeyId == "ASIACONTAINER")
        #expect(endpoint.requests.count == 1)
        await endpoint.stop()
    }
}
