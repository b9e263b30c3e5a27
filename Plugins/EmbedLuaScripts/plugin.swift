import Foundation
import PackagePlugin

/// Embeds every `lua/*.lua` file of the package into the target as Swift string constants, so the
/// binaries carry the exact scripts from `lua/` (the single source) and no copy can drift.
@main
struct EmbedLuaScripts: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        let luaDirectory = context.package.directoryURL.appending(path: "lua")
        let scripts = try FileManager.default
            .contentsOfDirectory(at: luaDirectory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "lua" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedLuaScripts.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(scripts.count) Lua scripts from lua/ into \(target.name)",
                executable: try context.tool(named: "LuaEmbedder").url,
                arguments: [output.path] + scripts.map(\.path),
                inputFiles: scripts,
                outputFiles: [output]
            )
        ]
    }
}
