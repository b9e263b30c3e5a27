import Foundation

/// Executables of this package (`quotakeeper`, `bedrock-sim`, `QuotaKeeperTestWorker`, ...) in the build
/// folder that holds the running test bundle: `swift build --build-tests` builds them all before `swift test`.
public enum BuiltProduct {
    /// The executable `name`, or an error saying where it was looked for.
    public static func url(_ name: String) throws -> URL {
        let folders = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL,
        ]
        for folder in folders {
            let candidate = folder.appending(path: name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestSupportError(
            "\(name) is not built next to the test bundle (looked in \(folders.map(\.path))): run `swift build --build-tests` first")
    }
}
