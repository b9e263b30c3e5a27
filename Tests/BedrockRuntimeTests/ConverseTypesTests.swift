import BedrockRuntime
import Foundation
import Testing

@Suite("Converse wire types")
struct ConverseTypesTests {
    @Test("a Converse answer with tool use, no cache fields and an unknown stop reason decodes")
    func decodeAnswer() throws {
        let json = """
        {"output":{"message":{"role":"assistant","content":[
            {"text":"Let me check. "},
            {"toolUse":{"toolUseId":"t-1","name":"lookup","input":{"city":"Paris","days":3,"metric":true}}}]}},
         "stopReason":"tool_use","usage":{"inputTokens":31,"outputTokens":12,"totalTokens":43},
         "metrics":{"latencyMs":812},"futureField":{"x":1}}
        """
        let answer = try JSONDecoder().decode(ConverseResponse.self, from: Data(json.utf8))
        #expect(answer.stopReason == .toolUse)
        #expect(answer.usage == TokenUsage(inputTokens: 31, outputTokens: 12, totalTokens: 43))
        #expect(answer.usage.cacheReadInputTokens == 0)
        #expect(answer.metrics?.latencyMs == 812)
        #expect(answer.text == "Let me check. ")
        let toolUse = try #require(answer.output.message?.content.last)
        guard case .other(let type, .object(let fields)) = toolUse else {
            Issue.record("tool use not kept: \(toolUse)")
            return
        }
        #expect(type == "toolUse")
        #expect(fields["input"] == .object(["city": .string("Paris"), "days": .number(3), "metric": .bool(true)]))

        let unknown = try JSONDecoder().decode(StopReason.self, from: Data(#""model_context_window_exceeded""#.utf8))
        #expect(unknown.rawValue == "model_context_window_exceeded")
    }

    @Test("a request encodes to Bedrock's wire shape and round-trips")
    func encodeRequest() throws {
        let request = ConverseRequest(
            messages: [.user("hi"), .assistant("hello"), Message(role: .user, content: [.text("more"), .cachePoint])],
            system: [.text("be brief"), .cachePoint],
            inferenceConfig: InferenceConfiguration(maxTokens: 512, temperature: 0.2)
        )
        let data = try JSONEncoder().encode(request)
        let object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let messages = try #require(object["messages"] as? [[String: Any]])
        #expect(messages.first?["role"] as? String == "user")
        #expect((messages.first?["content"] as? [[String: String]])?.first == ["text": "hi"])
        #expect((object["system"] as? [[String: Any]])?.last?["cachePoint"] as? [String: String] == ["type": "default"])
        #expect((object["inferenceConfig"] as? [String: Any])?["maxTokens"] as? Int == 512)
        #expect(try JSONDecoder().decode(ConverseRequest.self, from: data) == request)

        let count = try JSONEncoder().encode(CountTokensRequest(converse: request))
        let countObject = try #require(JSONSerialization.jsonObject(with: count) as? [String: Any])
        let converse = try #require((countObject["input"] as? [String: Any])?["converse"] as? [String: Any])
        #expect(converse["messages"] != nil)
        #expect(converse["inferenceConfig"] == nil)
    }
}
