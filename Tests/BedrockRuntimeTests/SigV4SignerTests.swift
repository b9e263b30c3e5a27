@testable import BedrockRuntime
import Foundation
import Testing

/// AWS's published SigV4 test suite (aws-sig-v4-test-suite, as shipped in awslabs/aws-c-auth
/// tests/aws-signing-test-suite/v4): service `service`, Region `us-east-1`, 2015-08-30T12:36:00Z,
/// key AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY. Inputs are the raw request lines.
@Suite("SigV4 signer")
struct SigV4SignerTests {
    static let suiteCredentials = AWSCredentials(
        accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z
    static let signer = SigV4Signer(service: "service", region: "us-east-1")

    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method = "GET"
        var path: String
        var query = ""
        var headers: [SigV4Signer.Header] = []
        var body = ""
        var sessionToken: String?
        var signedHeaders = "host;x-amz-date"
        var signature: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(name: "get-vanilla", path: "/",
               signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-vanilla-query-order-key-case", path: "/", query: "Param2=value2&Param1=value1",
               signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(name: "get-vanilla-utf8-query", path: "/", query: "\u{1234}=bar",
               signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(name: "get-utf8", path: "/\u{1234}",
               signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(name: "get-space-normalized", path: "/example space/",
               signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
        Vector(name: "get-unreserved", path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
               signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(name: "get-slashes-normalized", path: "//example//",
               signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"),
        Vector(name: "get-header-value-trim", path: "/",
               headers: [.init("My-Header1", " value1"), .init("My-Header2", " \"a   b   c\"")],
               signedHeaders: "host;my-header1;my-header2;x-amz-date",
               signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        Vector(name: "get-vanilla-with-session-token", path: "/",
               sessionToken: "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
               signedHeaders: "host;x-amz-date;x-amz-security-token",
               signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"),
        Vector(name: "post-vanilla", method: "POST", path: "/",
               signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "post-x-www-form-urlencoded", method: "POST", path: "/",
               headers: [.init("Content-Type", "application/x-www-form-urlencoded")], body: "Param1=value1",
               signedHeaders: "content-type;host;x-amz-date",
               signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ]

    @Test("reproduces the published signature", arguments: vectors)
    func suiteVector(_ vector: Vector) {
        var credentials = Self.suiteCredentials
        credentials.sessionToken = vector.sessionToken
        let request = SigV4Signer.Request(
            method: vector.method, path: vector.path, query: vector.query,
            headers: [.init("Host", "example.amazonaws.com")] + vector.headers, body: Data(vector.body.utf8))
        let signed = Self.signer.sign(request, credentials: credentials, date: Self.suiteDate)
        #expect(signed.header("X-Amz-Date") == "20150830T123600Z")
        #expect(signed.header("Authorization") ==
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            + "SignedHeaders=\(vector.signedHeaders), Signature=\(vector.signature)")
    }

    @Test("get-vanilla and post-x-www-form-urlencoded intermediate steps match the suite")
    func intermediateSteps() {
        let get = SigV4Signer.Request(method: "GET", path: "/", headers: [
            .init("Host", "example.amazonaws.com"), .init("X-Amz-Date", "20150830T123600Z"),
        ])
        let canonical = Self.signer.canonicalRequest(get)
        #expect(canonical == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.signer.stringToSign(canonicalRequest: canonical, date: Self.suiteDate)
            == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")

        let post = SigV4Signer.Request(method: "POST", path: "/", headers: [
            .init("Content-Type", "application/x-www-form-urlencoded"), .init("Host", "example.amazonaws.com"),
            .init("X-Amz-Date", "20150830T123600Z"),
        ], body: Data("Param1=value1".utf8))
        let postCanonical = Self.signer.canonicalRequest(post)
        #expect(postCanonical.hasSuffix("9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"))
        #expect(Self.signer.stringToSign(canonicalRequest: postCanonical, date: Self.suiteDate).hasSuffix(
            "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"))
    }

    /// A bedrock-runtime Converse request, fixed credentials and date. Expected values computed
    /// independently with botocore 1.35.0's `SigV4Auth(creds, "bedrock", "us-east-1")` over the same
    /// `AWSRequest` (URL path `/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse`).
    @Test("a Converse request to bedrock-runtime signs the model id double-encoded", arguments: [
        (nil, "content-type;host;x-amz-date", "181a639453a93ff1184037d687fed061b6de46e5cfbad7b7fc431179ec5f8209"),
        ("FQoGZXIvYXdzEXAMPLESESSIONTOKEN", "content-type;host;x-amz-date;x-amz-security-token",
         "4359e5260039e2adebed223bd78249e109cc39a79a8fe6e3d5b3d6be03cce8ca"),
    ] as [(String?, String, String)])
    func bedrockConverse(sessionToken: String?, signedHeaders: String, signature: String) {
        let modelId = "anthropic.claude-3-5-sonnet-20240620-v1:0"
        let path = BedrockRuntimeClient.path(modelId: modelId, operation: "converse")
        #expect(path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
        let body = #"{"messages":[{"role":"user","content":[{"text":"Hello, Bedrock"}]}],"inferenceConfig":{"maxTokens":512}}"#
        let signer = SigV4Signer(service: "bedrock", region: "us-east-1")
        let date = Date(timeIntervalSince1970: 1_732_649_400)  // 20241126T193000Z
        let request = SigV4Signer.Request(method: "POST", path: path, headers: [
            .init("Content-Type", "application/json"), .init("Host", "bedrock-runtime.us-east-1.amazonaws.com"),
        ], body: Data(body.utf8))
        var credentials = Self.suiteCredentials
        credentials.sessionToken = sessionToken
        let signed = signer.sign(request, credentials: credentials, date: date)
        #expect(signer.canonicalRequest(signed).contains("\n/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse\n"))
        #expect(signed.header("X-Amz-Security-Token") == sessionToken)
        #expect(signed.header("Authorization") ==
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20241126/us-east-1/bedrock/aws4_request, "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)")
    }

    @Test("ARNs keep their slashes encoded in the path and double-encoded in the signature")
    func arnPath() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0"
        let path = BedrockRuntimeClient.path(modelId: arn, operation: "converse")
        #expect(path == "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-sonnet-4-20250514-v1%3A0/converse")
        #expect(SigV4Signer.canonicalURI(path).contains("inference-profile%252Fus.anthropic"))
    }

    @Test("the date stamp is UTC")
    func amzDate() {
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
        #expect(SigV4Signer.amzDate(Self.suiteDate) == "20150830T123600Z")
    }
}
