import Glibc
public import PluginHostSupport

/// One operation at a time per machine: an exclusive flock(2) on the lock file in the runtime
/// directory. The freeze guard inherits the descriptor, so the lock is held until the host and
/// the guard have both exited — a new operation cannot start while an old guard still thaws.
public final class OperationLock {
    public let descriptor: FileDescriptor

    /// Who holds the lock, as the holder wrote it into the file.
    public struct Holder: Sendable, Equatable {
        public var pid: Int32
        public var operationID: String
        public var startedAt: String
        /// The step it was in when it last said (never written while frozen).
        public var phase: String = "starting"
    }

    private let operationID: String
    private let startedAt: String

    private init(descriptor: FileDescriptor, operationID: String, startedAt: String) {
        self.descriptor = descriptor
        self.operationID = operationID
        self.startedAt = startedAt
    }

    /// Records the current step for `status`. Never call it while filesystems are frozen: the
    /// runtime directory could be on one of them.
    public func setPhase(_ phase: String) {
        let text = "\(getpid()) \(operationID) \(startedAt) \(phase)\n"
        try? descriptor.truncate(to: 0)
        try? descriptor.write(Array(text.utf8), at: 0)
    }

    /// Takes the lock without waiting; throws `OperationBusy` naming the holder if it is taken.
    public static func acquire(paths: StatePaths, operationID: String) throws(HostError) -> OperationLock {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(paths.lockFile, O_RDWR | O_CREAT | O_NOFOLLOW, mode: 0o600)
        } catch {
            throw HostError(.incorrectPluginhostFile, "cannot open the lock file: \(error)", step: "checks")
        }
        if (try? file.tryLock(.exclusive)) != true {
            let holder =
                readHolder(file).map { " (operation \($0.operationID), pid \($0.pid), started \($0.startedAt))" } ?? ""
            throw HostError(.operationBusy, "another operation holds \(paths.lockFile)\(holder)", step: "checks")
        }
        let lock = OperationLock(descriptor: file, operationID: operationID, startedAt: isoTimestamp())
        lock.setPhase("starting")
        return lock
    }

    /// Who holds the lock now, or nil when nobody does (a non-blocking shared probe).
    public static func currentHolder(paths: StatePaths) -> Holder? {
        guard let file = try? FileDescriptor.open(paths.lockFile, O_RDONLY | O_NOFOLLOW) else { return nil }
        if (try? file.tryLock(.shared)) == true {
            try? file.unlock()
            return nil
        }
        return readHolder(file) ?? Holder(pid: 0, operationID: "unknown", startedAt: "unknown")
    }

    private static func readHolder(_ file: FileDescriptor) -> Holder? {
        var buffer = [UInt8](repeating: 0, count: 512)
        guard let count = try? file.read(into: &buffer, at: 0), count > 0 else { return nil }
        let fields = String(decoding: buffer[0..<count], as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard fields.count >= 3, let pid = Int32(fields[0]) else { return nil }
        return Holder(
            pid: pid, operationID: String(fields[1]), startedAt: String(fields[2]),
            phase: fields.count > 3 ? String(fields[3]) : "unknown")
    }
}
