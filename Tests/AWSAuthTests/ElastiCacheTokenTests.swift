import AWSAuth
import ChildProcesses
import Foundation
import Testing

/// ElastiCache IAM tokens against tokens botocore's presigner made for the same inputs
/// (scripts/elasticache-token-vectors generated the vectors; the live test runs it when botocore is installed).
@Suite("ElastiCache IAM token")
struct ElastiCacheTokenTests {
    struct Vector: Sendable {
        var cache, user, region, key, secret: String
        var sessionToken: String?
        var epoch: Int
        var serverless: Bool
        var service: String
        var expected: String

        var generator: ElastiCacheIAMToken {
            ElastiCacheIAMToken(userID: user, cacheName: cache, region: region, serverless: serverless, service: service)
        }
        var credentials: AWSCredentials { AWSCredentials(accessKeyId: key, secretAccessKey: secret, sessionToken: sessionToken) }
        var date: Date { Date(timeIntervalSince1970: TimeInterval(epoch)) }
    }

    static let vectors = [
        Vector(cache: "my-cache", user: "my-user", region: "us-east-1", key: "AKIDEXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: nil, epoch: 1764316800, serverless: false, service: "elasticache",
               expected: "my-cache/?Action=connect&User=my-user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20251128%2Fus-east-1%2Felasticache%2Faws4_request&X-Amz-Date=20251128T080000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=7de6a2621bca943bdb7227d30bdc340c7ccd280cd76ec06714a3261f29513721"),
        Vector(cache: "quota-ledger", user: "quotakeeper-app", region: "eu-west-1", key: "ASIAEXAMPLE", secret: "secret/with+chars=", sessionToken: "IQoJb3JpZ2luX2VjEPT//////////wEaCXVz+tok=", epoch: 1767225599, serverless: false, service: "elasticache",
               expected: "quota-ledger/?Action=connect&User=quotakeeper-app&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20251231%2Feu-west-1%2Felasticache%2Faws4_request&X-Amz-Date=20251231T235959Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEPT%2F%2F%2F%2F%2F%2F%2F%2F%2F%2FwEaCXVz%2Btok%3D&X-Amz-Signature=f322ca4c7f47cc8333f13bf1ce250bbda5466182bf4202d4f7f1f7768448e460"),
        Vector(cache: "serverless-cache", user: "app.user_1", region: "ap-southeast-2", key: "ASIASERVERLESS", secret: "s3cr3t", sessionToken: "tok", epoch: 1700000000, serverless: true, service: "elasticache",
               expected: "serverless-cache/?Action=connect&User=app.user_1&ResourceType=ServerlessCache&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIASERVERLESS%2F20231114%2Fap-southeast-2%2Felasticache%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok&X-Amz-Signature=ee68b1b96348ffb61fdf7e2fb4c1613414615add186671ffc94c8d29bba7a843"),
        Vector(cache: "clustercfg-db", user: "memdb-user", region: "us-west-2", key: "AKIAMEMDB", secret: "memdb-secret", sessionToken: nil, epoch: 1764316800, serverless: false, service: "memorydb",
               expected: "clustercfg-db/?Action=connect&User=memdb-user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAMEMDB%2F20251128%2Fus-west-2%2Fmemorydb%2Faws4_request&X-Amz-Date=20251128T080000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=78697cdde4325b9fc4e5e526079fbca1cf5a79b4adf8c75375adbca1e739beba"),
    ]

    @Test("tokens equal botocore's for the committed vectors (session token, serverless, MemoryDB)", arguments: vectors)
    func matchesBotocoreVectors(_ vector: Vector) {
        #expect(vector.generator.token(credentials: vector.credentials, date: vector.date) == vector.expected)
    }

    static func botocoreAvailable() async -> Bool {
        let check = try? await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", "-c", "import botocore"], standardError: .discarded)
        return check?.status == 0
    }

    @Test("a token for today's date and a fresh session token equals botocore's, run now",
          .enabled("botocore is not installed (apt-get install python3-botocore)") { await botocoreAvailable() })
    func matchesBotocoreLive() async throws {
        let epoch = Int(Date().timeIntervalSince1970)
        let vector = Vector(
            cache: "live-cache", user: "live-user", region: "us-east-2", key: "ASIALIVE", secret: "live/secret+\(epoch)",
            sessionToken: "session+/=\(epoch)", epoch: epoch, serverless: false, service: "elasticache", expected: "")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/elasticache-token-vectors").path
        let run = try await ChildProcess.run(
            URL(fileURLWithPath: "/usr/bin/env"),
            arguments: ["python3", script, vector.cache, vector.user, vector.region, vector.key, vector.secret,
                        vector.sessionToken!, String(epoch), "0", vector.service],
            standardError: .inherited)
        let expected = run.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(run.status == 0)
        #expect(vector.generator.token(credentials: vector.credentials, date: vector.date) == expected)
        #expect(expected.hasPrefix("live-cache/?Action=connect&User=live-user&"))
    }
}
