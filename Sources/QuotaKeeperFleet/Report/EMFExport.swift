import Foundation
import ArgumentParser
import QuotaKeeperEMF

/// `--emf`: each app instance writes the library's metrics as CloudWatch Embedded Metric Format lines, the
/// way a service on ECS or Lambda would hand them to CloudWatch Logs.
enum EMFExport {
    /// An EMF backend writing to `path` (created or truncated), with the app as a fixed `App` dimension.
    /// - Parameter flushInterval: wall time between flushes (one simulated minute in a time-scaled run).
    static func factory(path: String, app: String, flushInterval: Duration) throws -> EMFMetricsFactory {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw FleetError(.invalidConfiguration, "cannot write EMF lines to \(path)")
        }
        var configuration = EMFConfiguration()
        configuration.flushInterval = flushInterval
        configuration.dimensions.fixed = ["App": app]
        return EMFMetricsFactory(configuration: configuration, output: .fileHandle(handle))
    }
}

extension FleetCommand.Run {
    /// The `--emf` folder, created if missing.
    static func emfDirectory(_ path: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("--emf \(path): cannot create the folder (\(error.localizedDescription))")
        }
        return url
    }
}
