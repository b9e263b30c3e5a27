import Foundation

/// An SVG timeline per mode: requests admitted (or, for a TPM-only quota, tokens charged) over the trailing
/// 60 s per model against the quota line, with quota 429s (red), overloads (purple) and 503s (orange) marked
/// per second under the axis. The x axis is Bedrock time (simulated seconds) since the mode's start.
enum TimelineChart {
    static func svg(_ report: FleetReport) -> String {
        let settings = report.settings
        let panelWidth = 900.0, panelHeight = 260.0, left = 60.0, top = 40.0, plotWidth = 800.0, plotHeight = 170.0
        let countsTokens = settings.quotaRPM == nil && settings.quotaTPM != nil
        let quota = (settings.quotaRPM ?? settings.quotaTPM).map(Double.init)
        let measure = countsTokens ? "tokens charged" : "requests admitted"
        let seconds = max(1, Int((settings.durationSeconds / settings.timeScale).rounded()) + 60)
        let models = [settings.primaryModel] + (settings.fallbackModel.map { [$0] } ?? [])
        let colors = ["#1f77b4", "#2ca02c"]
        var peak = quota ?? 1
        var rolling: [String: [[Double]]] = [:]
        for mode in report.modes {
            var perModel: [[Double]] = []
            for model in models {
                var admitted = Array(repeating: 0.0, count: seconds + 1)
                for second in mode.timeline[model] ?? [] where second.second >= 0 && second.second <= seconds {
                    admitted[second.second] = Double(countsTokens ? second.tokensCharged : second.admitted)
                }
                var sums = Array(repeating: 0.0, count: seconds + 1)
                var running = 0.0
                for index in 0...seconds {
                    running += admitted[index]
                    if index >= 60 { running -= admitted[index - 60] }
                    sums[index] = running
                }
                peak = max(peak, sums.max() ?? 0)
                perModel.append(sums)
            }
            rolling[mode.mode] = perModel
        }
        let yMax = (peak * 1.15).rounded(.up)
        func x(_ second: Int) -> Double { left + plotWidth * Double(second) / Double(seconds) }
        func y(_ value: Double) -> Double { top + plotHeight * (1 - value / yMax) }

        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(panelWidth))" height="\(Int(panelHeight) * report.modes.count)" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>

        """
        for (index, mode) in report.modes.enumerated() {
            svg += "<g transform=\"translate(0,\(Int(panelHeight) * index))\">\n"
            let referee = mode.referee[settings.primaryModel]
            svg += "<text x=\"\(left)\" y=\"20\" font-size=\"14\" font-weight=\"bold\">\(settings.scenario), \(mode.mode): \(measure) in the last 60 s (Bedrock time) — quota 429s \(referee?.quotaThrottles ?? 0), 503s \(referee?.serviceUnavailable ?? 0)</text>\n"
            svg += "<line x1=\"\(left)\" y1=\"\(y(0))\" x2=\"\(left + plotWidth)\" y2=\"\(y(0))\" stroke=\"black\"/>\n"
            svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(y(0))\" stroke=\"black\"/>\n"
            for tick in stride(from: 0.0, through: yMax, by: max(1, (yMax / 4).rounded())) {
                svg += "<text x=\"\(left - 6)\" y=\"\(y(tick) + 4)\" text-anchor=\"end\">\(Int(tick))</text>\n"
            }
            for tick in stride(from: 0, through: seconds, by: 60) {
                svg += "<text x=\"\(x(tick))\" y=\"\(y(0) + 40)\" text-anchor=\"middle\">\(tick) s</text>\n"
            }
            if let quota {
                svg += "<line x1=\"\(left)\" y1=\"\(y(quota))\" x2=\"\(left + plotWidth)\" y2=\"\(y(quota))\" stroke=\"red\" stroke-dasharray=\"6,4\"/>\n"
                svg += "<text x=\"\(left + plotWidth + 4)\" y=\"\(y(quota) + 4)\" fill=\"red\">quota \(Int(quota))</text>\n"
            }
            for (modelIndex, sums) in (rolling[mode.mode] ?? []).enumerated() {
                let points = sums.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke=\"\(colors[modelIndex % colors.count])\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
                svg += "<text x=\"\(left + 10 + 260 * Double(modelIndex))\" y=\"\(top - 4)\" fill=\"\(colors[modelIndex % colors.count])\">\(models[modelIndex])</text>\n"
            }
            for (row, kind) in [("quota 429", "red"), ("overloaded", "purple"), ("503", "orange")].enumerated() {
                let baseline = y(0) + 8 + Double(row) * 8
                for model in models {
                    for second in mode.timeline[model] ?? [] where second.second >= 0 && second.second <= seconds {
                        let count = [second.quotaThrottles, second.overloaded, second.unavailable][row]
                        guard count > 0 else { continue }
                        svg += "<rect x=\"\(x(second.second))\" y=\"\(baseline)\" width=\"\(max(1, plotWidth / Double(seconds)))\" height=\"6\" fill=\"\(kind.1)\"><title>\(count) \(kind.0) at \(second.second) s</title></rect>\n"
                    }
                }
            }
            svg += "<text x=\"\(left + plotWidth + 4)\" y=\"\(y(0) + 14)\" font-size=\"10\">429 quota / overloaded / 503</text>\n"
            svg += "</g>\n"
        }
        svg += "</svg>\n"
        return svg
    }
}
