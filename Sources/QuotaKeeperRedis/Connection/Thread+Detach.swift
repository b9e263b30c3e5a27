import Foundation

extension Thread {
    /// Starts a named thread of the layer running `body`, with `SIGPIPE` blocked on it: a write to a connection
    /// the server closed (OpenSSL writes with plain `write()`) then fails with `EPIPE` instead of killing the
    /// process, without changing the process's signal handling.
    static func detach(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            var pipeSignal = sigset_t()
            sigemptyset(&pipeSignal)
            sigaddset(&pipeSignal, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
            body()
        }
        thread.name = name
        thread.start()
    }

    /// Runs `body` with `SIGPIPE` blocked on the calling thread (a caller writing through OpenSSL on a connection
    /// the server just closed), then discards a `SIGPIPE` the body raised and restores the thread's mask.
    static func withPipeSignalBlocked<T>(_ body: () -> T) -> T {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
        defer {
            var pending = sigset_t()
            sigpending(&pending)
            if sigismember(&pending, SIGPIPE) == 1, sigismember(&previous, SIGPIPE) == 0 {
                var noWait = timespec()
                sigtimedwait(&pipeSignal, nil, &noWait)
            }
            pthread_sigmask(SIG_SETMASK, &previous, nil)
        }
        return body()
    }
}
