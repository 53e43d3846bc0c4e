import Glibc
import PluginHostSupport

/// The files the plugin trusts as root: the password file (libpq reads it by path) and the
/// directory that keeps backup labels, checked with the host's `FileTrust` rules: on the real
/// file after resolving every symlink, and on every directory above it.
enum CredentialFiles {
    /// Why `path` may not be used as a password file, or nil when it may: a regular file owned by
    /// root with no group or other permission bits (600 or 400), in root-owned directories.
    static func passfileProblem(_ path: String) -> String? {
        guard case .failure(let failure) = FileTrust.verify(path, rule: .secret) else { return nil }
        let real = try? FileTrust.resolve(path).get()
        let shown = real.map { $0 == path ? path : "\(path) (really \($0))" } ?? path
        return "password file \(shown): \(failure)" + (failure.remedy.map { " (\($0))" } ?? "")
    }

    /// Why `path` may not keep backup labels, or nil: an existing directory owned by root, not
    /// writable by group or other, in root-owned directories.
    static func labelDirectoryProblem(_ path: String) -> String? {
        guard case .failure(let failure) = FileTrust.verifyDirectory(path) else { return nil }
        if failure.isMissing { return "label directory \(failure); create it (mkdir -m 700 \(path))" }
        return "label directory \(failure)" + (failure.remedy.map { " (\($0))" } ?? "")
    }

    /// realpath(3), with a message for a missing file or a dangling symlink.
    static func resolve(_ path: String) -> Result<String, FileTrust.Failure> {
        FileTrust.resolve(path)
    }
}
