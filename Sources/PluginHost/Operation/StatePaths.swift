import Glibc
import PluginHostSupport

/// Where the host keeps machine-wide state: the lock and the freeze journal in a runtime
/// directory (tmpfs on real systems, so a reboot clears it), reports in a state directory.
public struct StatePaths: Sendable, Equatable {
    public static let defaultRunDirectory = "/run/pluginhost"
    public static let defaultStateDirectory = "/var/lib/pluginhost"

    public var runDirectory: String
    public var stateDirectory: String

    public init(
        runDirectory: String = StatePaths.defaultRunDirectory,
        stateDirectory: String = StatePaths.defaultStateDirectory
    ) {
        self.runDirectory = runDirectory
        self.stateDirectory = stateDirectory
    }

    public var lockFile: String { runDirectory + "/lock" }
    /// The freeze journal (`FreezeJournal`).
    public var journalFile: String { runDirectory + "/freeze-journal" }
    /// Where versions before the binary journal kept theirs (JSON): found there, it is kept
    /// aside and reported like any journal that cannot be read.
    public var legacyJournalFile: String { runDirectory + "/journal.json" }
    /// The two-phase session's socket (root only).
    public var sessionSocket: String { runDirectory + "/session.sock" }
    public var lastReportFile: String { stateDirectory + "/last-report.json" }
    public var reportsDirectory: String { stateDirectory + "/reports" }

    /// Creates the directories (mode 0700) if needed and refuses ones that others could change:
    /// whoever can write there could fake a journal or a report.
    public func prepare() throws(HostError) {
        for directory in [runDirectory, stateDirectory, reportsDirectory] {
            try Self.makeDirectory(directory)
        }
    }

    /// Creates `path` (and missing parents) with `mode`, and refuses an existing directory that
    /// is not root's or that others can write.
    public static func makeDirectory(_ path: String, mode: UInt32 = 0o700) throws(HostError) {
        do {
            try FileSystem.makeDirectory(path, mode: mode)
        } catch let error where error.errno != EEXIST {
            let parent = FileTrust.parent(of: path)
            if error.errno == ENOENT && parent != path {
                try makeDirectory(parent, mode: 0o755)
                return try makeDirectory(path, mode: mode)
            }
            throw HostError(.incorrectPluginhostFile, "cannot create \(path): \(error)", step: "checks")
        } catch {}
        guard let info = try? FileSystem.status(of: path, followingSymlinks: false), info.st_mode & S_IFMT == S_IFDIR
        else {
            throw HostError(.incorrectPluginhostFile, "\(path) is not a directory", step: "checks")
        }
        if info.st_uid != 0 || info.st_mode & 0o022 != 0 {
            throw HostError(
                .incorrectPluginhostFile,
                """
                \(path) is owned by uid \(info.st_uid) with mode \(octal(info.st_mode & 0o7777)); it must be root's \
                and not writable by others
                """,
                step: "checks")
        }
        if let failure = FileTrust.checkDirectories(above: path) {
            throw HostError(.incorrectPluginhostFile, "\(failure)", step: "checks")
        }
    }
}
