import QuotaKeeper

/// One minute of a budget's settled calls, idle minutes included (the history lists only busy ones).
struct MinuteUsage: Sendable {
    var startMilliseconds: Int64
    var requests: Int
    var tokens: Int
    var inputTokens: Int = 0
    var outputTokens: Int = 0
    /// Per app: requests and tokens.
    var apps: [String: HistoryMinute.Usage]
    /// The apps beyond the first `historyApps` of the minute, together.
    var otherApps: HistoryMinute.Usage? = nil

    /// Every minute of the `minutes` ending with the one holding `now` (ms since 1970), oldest first.
    static func timeline(_ history: [HistoryMinute], endingAt now: Int64, minutes: Int) -> [MinuteUsage] {
        let busy = Dictionary(history.map { ($0.startMilliseconds / 60_000, $0) }, uniquingKeysWith: { first, _ in first })
        let current = now / 60_000
        return (0..<Int64(minutes)).reversed().map { offset in
            let minute = current - offset
            guard let stored = busy[minute] else {
                return MinuteUsage(startMilliseconds: minute * 60_000, requests: 0, tokens: 0, apps: [:])
            }
            return MinuteUsage(
                startMilliseconds: stored.startMilliseconds, requests: stored.requests, tokens: stored.tokens,
                inputTokens: stored.inputTokens, outputTokens: stored.outputTokens, apps: stored.apps,
                otherApps: stored.otherApps)
        }
    }
}
