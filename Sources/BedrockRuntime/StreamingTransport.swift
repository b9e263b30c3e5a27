import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Sends requests whose answers are read while they arrive (event streams).
///
/// FoundationNetworking on Linux has no `URLSession.bytes(for:)`, so this uses a session delegate: each
/// task's response head resumes the caller, and each received chunk of bytes is yielded into that task's
/// body stream. Ending the body stream early (its consumer stops, or its task is cancelled) cancels the data
/// task, which closes the connection. The body stream buffers what the connection delivers (Bedrock's
/// streams are a few kilobytes to a few hundred); a consumer that stops reading cancels the transfer.
final class StreamingTransport: Sendable {
    typealias Body = AsyncThrowingStream<Data, any Error>

    private let session: URLSession
    private let delegate: StreamingSessionDelegate

    init(configuration: URLSessionConfiguration) {
        delegate = StreamingSessionDelegate()
        session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
    }

    deinit {
        session.invalidateAndCancel()
    }

    /// Sends `request`; returns when the response head has arrived, with the body still arriving.
    /// - Throws: The transport's error (`URLError`), or `CancellationError` if the calling task was cancelled.
    func open(_ request: URLRequest) async throws -> (HTTPURLResponse, Body) {
        let task = session.dataTask(with: request)
        let (body, continuation) = Body.makeStream()
        continuation.onTermination = { _ in task.cancelAsynchronously() }
        let delegate = self.delegate
        let head = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (head: CheckedContinuation<URLResponse, any Error>) in
                delegate.register(task.taskIdentifier, head: head, body: continuation)
                task.resume()
            }
        } onCancel: {
            task.cancelAsynchronously()
        }
        try Task.checkCancellation()
        guard let http = head as? HTTPURLResponse else {
            task.cancel()
            throw URLError(.badServerResponse)
        }
        return (http, body)
    }
}

/// Routes each data task's callbacks to its waiting caller and body stream.
private final class StreamingSessionDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: NSObject is not Sendable; every stored property here is the Mutex.
    private struct Receiver {
        var head: CheckedContinuation<URLResponse, any Error>?
        let body: StreamingTransport.Body.Continuation
    }

    private let receivers = Mutex<[Int: Receiver]>([:])

    func register(_ id: Int, head: CheckedContinuation<URLResponse, any Error>, body: StreamingTransport.Body.Continuation) {
        receivers.withLock { $0[id] = Receiver(head: head, body: body) }
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let head = receivers.withLock { receivers -> CheckedContinuation<URLResponse, any Error>? in
            defer { receivers[dataTask.taskIdentifier]?.head = nil }
            return receivers[dataTask.taskIdentifier]?.head
        }
        completionHandler(.allow)
        head?.resume(returning: response)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let body = receivers.withLock { $0[dataTask.taskIdentifier]?.body }
        body?.yield(data)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        guard let receiver = receivers.withLock({ $0.removeValue(forKey: task.taskIdentifier) }) else { return }
        receiver.head?.resume(throwing: error ?? URLError(.badServerResponse))
        if let error {
            receiver.body.finish(throwing: error)
        } else {
            receiver.body.finish()
        }
    }
}
