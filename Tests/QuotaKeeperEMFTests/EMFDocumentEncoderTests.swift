import Testing

@testable import QuotaKeeperEMF

/// `EMFDocumentEncoder`: values aggregated elsewhere, written with the backend's dimension mapping and limits.
@Suite struct EMFDocumentEncoderTests {
    @Test func valuesReadElsewhereBecomeValidDocumentsWithMappedDimensions() throws {
        var configuration = EMFConfiguration()
        configuration.dimensions.rollups = []
        let encoder = EMFDocumentEncoder(configuration: configuration)
        let budget = ("budget", "anthropic.claude-3-haiku-20240307-v1:0@us-east-1")
        let lines = encoder.documents(
            for: [
                EMFMetricValue(name: "quotakeeper_budget_in_flight", dimensions: [budget], unit: .count, values: [3]),
                EMFMetricValue(name: "quotakeeper_budget_effective_ceiling", dimensions: [budget], values: [0.8, .nan]),
                EMFMetricValue(name: "quotakeeper_budget_limit", dimensions: [budget, ("limit", "rpm")], unit: .count, values: [150]),
                EMFMetricValue(name: "dropped", dimensions: [budget], values: [.infinity]),
            ],
            timestampMilliseconds: 1_764_186_600_000)
        let documents = try lines.map { try EMFDocument($0) }
        #expect(documents.count == 2, "one document per dimension values")
        let plain = try #require(documents.first { $0.dimensionSets == [["ModelId", "Region"]] })
        #expect(plain.timestamp == 1_764_186_600_000)
        #expect(plain.dimensions == ["ModelId": "anthropic.claude-3-haiku-20240307-v1:0", "Region": "us-east-1"])
        #expect(plain.values == ["quotakeeper_budget_in_flight": [3], "quotakeeper_budget_effective_ceiling": [0.8]], "non-finite values are dropped")
        #expect(plain.units["quotakeeper_budget_in_flight"] == "Count")
        let limit = try #require(documents.first { $0.dimensionSets == [["ModelId", "Region", "Limit"]] })
        #expect(limit.dimensions["Limit"] == "rpm")
        #expect(limit.values == ["quotakeeper_budget_limit": [150]])
    }
}
