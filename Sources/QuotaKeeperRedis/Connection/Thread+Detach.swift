import Foundation

extension Thread {
    /// Starts a named thread of the layer running `body`.
    static func detach(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        thread.start()
    }
}
