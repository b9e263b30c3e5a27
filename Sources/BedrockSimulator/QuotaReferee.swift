/// The simulator's own quota accounting for one model: rolling request and token windows, written
/// independently of QuotaKeeper's ledger so that it can judge it.
///
/// Bedrock's rule: at admission a request holds `input + cacheRead + cacheWrite + maxTokens`; at completion the
/// hold is replaced by the charge `input + cacheWrite + output x burndown` (cache reads are given back). Holds and charges stay at the admission
/// instant. A request is admitted only if, counting every hold and charge still inside the windows, one more
/// request fits the requests window and its hold fits both the minute and the day token windows.
struct QuotaReferee {
    /// Why a request was refused.
    enum Refusal: Equatable {
        case requests, tokens, tokensPerDay
    }

    private struct Entry {
        var at: Double
        var tokens: Int
    }

    let requestsPerWindow: Int?
    let tokensPerWindow: Int?
    let tokensPerDay: Int?
    let window: Double
    let dayWindow: Double

    /// Entries in admission order; `entries[i]` has sequence number `firstSequence + i`.
    private var entries: [Entry] = []
    private var firstSequence = 0
    /// Index of the first entry inside the minute window / the day window.
    private var windowStart = 0
    private var dayStart = 0
    /// Running sums over the entries inside each window.
    private(set) var windowRequests = 0
    private(set) var windowTokens = 0
    private(set) var dayTokens = 0
    /// Highest window usage seen (after admissions, and after settlements, where burndown can push the
    /// charge above the hold).
    private(set) var peakWindowRequests = 0
    private(set) var peakWindowTokens = 0

    init(requestsPerWindow: Int?, tokensPerWindow: Int?, tokensPerDay: Int?, window: Double, dayWindow: Double) {
        self.requestsPerWindow = requestsPerWindow
        self.tokensPerWindow = tokensPerWindow
        self.tokensPerDay = tokensPerDay
        self.window = window
        self.dayWindow = dayWindow
    }

    /// Admits a request holding `hold` tokens at simulated instant `now`, or says which limit refused it.
    /// - Returns: the ticket (sequence number) to settle later, or the refusal.
    mutating func admit(hold: Int, now: Double) -> Result<Int, RefusalError> {
        expire(now: now)
        if let limit = requestsPerWindow, windowRequests + 1 > limit { return .failure(RefusalError(.requests)) }
        if let limit = tokensPerDay, dayTokens + hold > limit { return .failure(RefusalError(.tokensPerDay)) }
        if let limit = tokensPerWindow, windowTokens + hold > limit { return .failure(RefusalError(.tokens)) }
        entries.append(Entry(at: now, tokens: hold))
        windowRequests += 1
        windowTokens += hold
        dayTokens += hold
        peakWindowRequests = max(peakWindowRequests, windowRequests)
        peakWindowTokens = max(peakWindowTokens, windowTokens)
        return .success(firstSequence + entries.count - 1)
    }

    /// Replaces a ticket's hold with its final charge.
    mutating func settle(ticket: Int, charge: Int, now: Double) {
        expire(now: now)
        let index = ticket - firstSequence
        guard index >= 0, index < entries.count else { return }  // already outside the day window
        let delta = charge - entries[index].tokens
        entries[index].tokens = charge
        if index >= windowStart {
            windowTokens += delta
            peakWindowTokens = max(peakWindowTokens, windowTokens)
        }
        if index >= dayStart { dayTokens += delta }
    }

    /// Moves both windows forward to `now`, dropping what fell out of them.
    mutating func expire(now: Double) {
        while windowStart < entries.count, entries[windowStart].at <= now - window {
            windowRequests -= 1
            windowTokens -= entries[windowStart].tokens
            windowStart += 1
        }
        while dayStart < entries.count, entries[dayStart].at <= now - dayWindow {
            dayTokens -= entries[dayStart].tokens
            dayStart += 1
        }
        let dropped = min(windowStart, dayStart)
        if dropped > 1_024, dropped * 2 > entries.count {
            entries.removeFirst(dropped)
            firstSequence += dropped
            windowStart -= dropped
            dayStart -= dropped
        }
    }

    struct RefusalError: Error, Equatable {
        let refusal: Refusal
        init(_ refusal: Refusal) { self.refusal = refusal }
    }
}
