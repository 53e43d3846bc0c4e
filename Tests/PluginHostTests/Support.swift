import Glibc
import PluginHostSupport

@testable import PluginHost

/// A fresh directory under /tmp (mkdtemp), removed with everything in it when released.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/pluginhost-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        _ = run(["/bin/rm", "-rf", path])
    }

    /// Writes an executable script (mode 0700) and returns its path.
    func script(_ name: String, _ body: String) -> String {
        let file = "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o700)
        precondition(fd >= 0)
        _ = body.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        chmod(file, 0o700)
        return file
    }

    func read(_ name: String) -> String {
        guard let file = try? FileDescriptor.open("\(path)/\(name)", O_RDONLY),
            let bytes = try? file.readAll(limit: 1 << 20)
        else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Runs a command to completion (for test set-up).
@discardableResult
func run(_ argv: [String]) -> Int32 {
    guard
        let child = try? ChildProcess(
            spawning: Command(
                executable: argv[0], arguments: Array(argv.dropFirst()),
                environment: ["PATH": ScriptRunner.searchPath]))
    else { return -1 }
    if case .exited(.exited(let status)) = child.wait() { return status }
    return -1
}
