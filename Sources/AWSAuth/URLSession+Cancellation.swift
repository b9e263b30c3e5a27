import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension URLSession {
    /// `data(for:)` whose cancellation cannot deadlock.
    ///
    /// FoundationNetworking's own `data(for:)` (Linux) cancels its data task from the calling task's cancellation
    /// handler, which hops synchronously onto the session's queue; when the session's queue is just then resuming
    /// that task's continuation (the response arrived), it waits for the lock the handler holds, and both threads
    /// stop for good (seen as a fleet app instance that never finished after a call hit its deadline). Here the
    /// handler only schedules the cancel on another thread.
    /// - Throws: The transport's error (`URLError`, `.cancelled` after cancellation).
    public func dataCancellingAsynchronously(for request: URLRequest) async throws -> (Data, URLResponse) {
        let cell = DataTaskCell()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Data, URLResponse), any Error>) in
                let task = dataTask(with: request) { data, response, error in
                    if let data, let response, error == nil {
                        continuation.resume(returning: (data, response))
                    } else {
                        continuation.resume(throwing: error ?? URLError(.badServerResponse))
                    }
                }
                cell.start(task)
            }
        } onCancel: {
            cell.cancel()
        }
    }
}

extension URLSessionTask {
    /// Cancels the task on another thread: safe from a cancellation handler or an `AsyncStream`'s `onTermination`
    /// (see ``Foundation/URLSession/dataCancellingAsynchronously(for:)``).
    public func cancelAsynchronously() {
        DispatchQueue.global().async { self.cancel() }
    }
}

/// The data task of one `dataCancellingAsynchronously` call, and whether it was cancelled before it existed.
private final class DataTaskCell: @unchecked Sendable {
    private let lock = NSLock()
    private var task: URLSessionDataTask?
    private var cancelled = false

    func start(_ task: URLSessionDataTask) {
        let cancelledAlready = lock.withLock {
            self.task = task
            return cancelled
        }
        task.resume()
        if cancelledAlready { task.cancelAsynchronously() }
    }

    func cancel() {
        let task = lock.withLock {
            cancelled = true
            return self.task
        }
        task?.cancelAsynchronously()
    }
}
