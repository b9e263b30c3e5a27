/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
///
/// For effects that happen in the background (a detached settlement, a reconnect): waiting a fixed time
/// instead would fail on a loaded machine and waste time on an idle one.
public func eventually(within limit: Duration = .seconds(5), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(20))
    }
}
