import Logging
import Synchronization

/// Keeps every log line (level, message, metadata, error) at every level, so tests can prove that no
/// prompt, response or credential is ever logged.
public final class RecordedLog: Sendable {
    private let lines = Mutex<[String]>([])

    public init() {}

    /// Every line recorded so far.
    public var all: [String] { lines.withLock { $0 } }

    /// A logger at trace level that records into this log.
    public func logger(label: String = "recorded") -> Logger {
        var logger = Logger(label: label) { _ in Handler(log: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    private struct Handler: LogHandler {
        let log: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            let error = event.error.map { " error=\($0)" } ?? ""
            log.append("\(event.level) \(event.message) \(merged)\(error)")
        }
    }
}
