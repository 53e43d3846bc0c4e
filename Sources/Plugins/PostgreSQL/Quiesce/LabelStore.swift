import Glibc
import PluginHostSupport
import PluginKit

/// Keeps what `pg_backup_stop` returns — the backup label and the tablespace map — as files under
/// `<labelDirectory>/<operation id>/` (directory 700, files 600), never in the data directory: a
/// `backup_label` there makes the server refuse to start without archived WAL. A restore copies
/// them into the restored data directory and supplies the archived WAL (restore_command).
struct LabelStore: Sendable {
    static let labelFileName = "backup_label"
    static let tablespaceMapFileName = "tablespace_map"

    let directory: String

    /// The operation's directory; the operation id must be one path component.
    func operationDirectory(_ operationID: String) throws(PluginError) -> String {
        guard !operationID.isEmpty, operationID.count <= 128, !operationID.hasPrefix("."),
            operationID.unicodeScalars.allSatisfy(PostgreSQLConfig.isLabelCharacter)
        else {
            throw PluginError(.failed, "the operation id \"\(operationID)\" cannot name a directory under \(directory)")
        }
        return directory + "/" + operationID
    }

    /// Creates the operation's directory before the backup starts, so that a directory that
    /// cannot be written fails the quiesce and not the resume, when the backup has already run.
    func prepare(operationID: String) throws(PluginError) -> String {
        if let problem = CredentialFiles.labelDirectoryProblem(directory) {
            throw PluginError(.invalidConfig, "config key \"labelDirectory\": \(problem)")
        }
        let path = try operationDirectory(operationID)
        if mkdir(path, 0o700) != 0 {
            let error = errno
            var info = stat()
            guard error == EEXIST, lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == 0,
                info.st_mode & 0o077 == 0
            else {
                throw PluginError(
                    .failed, "cannot create the backup label directory \(path): \(String(cString: strerror(error)))")
            }
        }
        return path
    }

    /// Writes one file completely and durably: a temporary file (600, O_NOFOLLOW), fsync,
    /// rename, fsync of the directory.
    static func write(_ contents: String, named name: String, in directory: String) throws(SystemError) -> String {
        let path = directory + "/" + name
        let temporary = directory + "/." + name + ".tmp"
        _ = unlink(temporary)
        let file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        try file.writeAll(contents)
        try retryingInterrupts("fsync \(temporary)") { fsync(file.rawValue) }
        file.close()
        try retryingInterrupts("rename \(temporary)") { rename(temporary, path) }
        let parent = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
        try retryingInterrupts("fsync \(directory)") { fsync(parent.rawValue) }
        return path
    }
}
