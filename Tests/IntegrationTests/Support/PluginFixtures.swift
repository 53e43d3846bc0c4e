import Glibc
import PluginHost
import PluginHostSupport

/// The repository root, from this file's path.
let repositoryRoot: String = {
    let parts = #filePath.split(separator: "/").dropLast(4)
    return "/" + parts.joined(separator: "/")
}()

/// Builds a shared library from C with `cc -shared -fPIC` and nothing else, as plugin authors do.
@discardableResult
func compilePlugin(_ source: String, to output: String, defines: [String] = []) throws -> String {
    let flags = defines.map { "-D\($0)" }.joined(separator: " ")
    let status = sh(
        "cc -shared -fPIC -O1 \(flags) -I '\(repositoryRoot)/Sources/PluginABI/include' -o '\(output)' '\(source)'")
    guard status == 0 else { throw FixtureError("cc failed for \(source) \(flags)") }
    chmod(output, 0o755)
    return output
}

/// A test fixture plugin with a chosen misbehaviour (Tests/Fixtures/fixture_plugin.c).
func fixturePlugin(_ behaviour: String, in directory: String, name: String = "fixture", extra: [String] = []) throws
    -> String
{
    try compilePlugin(
        "\(repositoryRoot)/Tests/Fixtures/fixture_plugin.c",
        to: "\(directory)/lib\(name)-\(behaviour.lowercased()).so",
        defines: ["BEHAVIOUR_\(behaviour)", "PLUGIN_NAME=\\\"\(name)\\\""] + extra)
}

extension HostSandbox {
    /// The plugins directory of this sandbox (created 0755, root's).
    var pluginsDirectory: String {
        let directory = scratch.path + "/plugins.d"
        mkdir(directory, 0o755)
        return directory
    }

    /// A directory for plugin libraries, root's and 0755.
    var libraryDirectory: String {
        let directory = scratch.path + "/lib"
        mkdir(directory, 0o755)
        return directory
    }

    /// `pluginhost plugin add LIBRARY …` into this sandbox's plugins directory.
    @discardableResult
    func addPlugin(
        _ library: String, name: String? = nil, order: Int = 50, timeout: Int = 10, config: String = "{}",
        extra: [String] = []
    ) -> Invocation {
        var arguments = [
            "plugin", "add", library, "--plugins-dir", pluginsDirectory, "--order", String(order),
            "--timeout", String(timeout), "--config", config,
        ]
        if let name { arguments += ["--name", name] }
        return invoke(arguments + extra)
    }

    /// Writes a manifest by hand (for tampering tests).
    @discardableResult
    func writeManifest(_ file: String, _ json: String, mode: mode_t = 0o644) -> String {
        scratch.write(pluginsDirectory + "/" + file, json, mode: mode)
    }

    func sha256(_ path: String) -> String {
        let file = try! FileDescriptor.open(path, O_RDONLY)
        return PluginVerifier.sha256(of: file)!
    }
}
