/// Runs `body` and cancels it when `deadline` passes first.
///
/// The one deadline race of the package (the call path's deadline, Bedrock's total timeout, the credential
/// endpoints' timeout): sub-second exact, unlike FoundationNetworking's own timeouts on Linux.
/// - Returns: what `body` returned, or nil when the deadline passed first (`body` is cancelled then and
///   this returns once it has ended).
/// - Throws: what `body` threw; `CancellationError` when the calling task was cancelled and `body` threw
///   (`body` is cancelled with the calling task and has the last word).
public func withTimeLimit<T: Sendable>(
    until deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    return try await withThrowingTaskGroup(of: TimeLimitFinish<T>.self) { group in
        group.addTask { .answered(try await body()) }
        group.addTask {
            do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return .callerCancelled }
            return .timedOut
        }
        defer { group.cancelAll() }
        do {
            while let finish = try await group.next() {
                switch finish {
                case .answered(let value): return value
                case .timedOut: return nil
                case .callerCancelled: continue  // body, cancelled too, answers
                }
            }
            throw CancellationError()  // not reached: body always finishes
        } catch {
            throw Task.isCancelled ? CancellationError() : error
        }
    }
}

/// Runs `body` and cancels it when `limit` has passed first; nil then (see ``withTimeLimit(until:_:)``).
public func withTimeLimit<T: Sendable>(
    _ limit: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withTimeLimit(until: .now + limit, body)
}

/// How the first task of ``withTimeLimit(until:_:)``'s race ended.
private enum TimeLimitFinish<T: Sendable>: Sendable {
    case answered(T)
    case timedOut
    case callerCancelled
}
