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
}
