import Glibc
public import PluginHostSupport
public import PluginHostWire

/// The freeze journal file in the runtime directory (format: `FreezeJournalRecord`): what one
/// operation did to each filesystem, written whole by the host before its guard starts and
/// updated in place, as each ioctl is issued and returns, by the guard (or by the host when it
/// thaws by itself). It is removed when the operation has ended with nothing left frozen; a
/// journal found by the next invocation (or `pluginhost recover`) belongs to an operation that
/// died, and recovery thaws exactly what it says this operation may have left frozen.
public enum FreezeJournal {
    public enum Contents: Sendable, Equatable {
        case absent
        case record(FreezeJournalRecord)
        /// There is a file, but it cannot be decoded (another version, damage): it is kept and
        /// reported, never acted on and never deleted.
        case unreadable(String)
    }

    public static func read(at path: String) -> Contents {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW)
        } catch {
            return error.errno == ENOENT ? .absent : .unreadable("\(error)")
        }
        let bytes: [UInt8]
        do {
            bytes = try file.readAll(limit: 1 << 24)
        } catch {
            return .unreadable("\(error)")
        }
        do {
            return .record(try FreezeJournalRecord.decode(bytes))
        } catch {
            return .unreadable(error.description)
        }
    }

    /// The record for an operation about to freeze `targets`.
    public static func record(operationID: String, targets: [FreezeTarget], deadlineSeconds: Double)
        -> FreezeJournalRecord
    {
        FreezeJournalRecord(
            operationID: operationID, hostPID: getpid(), deadlineMilliseconds: UInt64(deadlineSeconds * 1000),
            createdAtNanoseconds: epochNanoseconds(),
            mounts: targets.map {
                FreezeJournalRecord.Mount(
                    mountPoint: $0.mountPoint, fsType: $0.fsType, source: $0.source, device: $0.device,
                    mountID: UInt64($0.mountID), wave: $0.wave)
            })
    }

    /// Writes `record` as the journal (atomically: a reader sees the old file or the new).
    public static func write(_ record: FreezeJournalRecord, at path: String) throws(SystemError) {
        try writeFileAtomically(path, record.encoded(), mode: 0o600)
    }

    /// Moves an unreadable journal aside, next to where it was, so that it is kept (and still
    /// reported) but no longer in the way. Returns where it went.
    public static func keepAside(_ path: String) -> String? {
        let kept = "\(path).unreadable-\(isoTimestamp().filter { $0.isNumber || $0 == "T" })"
        return (try? FileSystem.rename(path, to: kept)) != nil ? kept : nil
    }

    /// Journals set aside earlier, for `status` and `recover` to report.
    public static func keptAside(in paths: StatePaths) -> [String] {
        guard let names = try? FileSystem.entries(of: paths.runDirectory) else { return [] }
        var found: [String] = []
        let prefixes = [paths.journalFile, paths.legacyJournalFile].map {
            String($0.split(separator: "/").last ?? "") + ".unreadable-"
        }
        for name in names {
            if prefixes.contains(where: { name.hasPrefix($0) }) { found.append(paths.runDirectory + "/" + name) }
        }
        return found.sorted()
    }
}

/// The host's shared mapping of its operation's journal: it reads the guard's progress from it
/// and, when it has to thaw by itself, records what it does there too.
final class JournalMap {
    let mapping: FreezeJournalMapping
    private let size: Int

    init(path: String) throws(SystemError) {
        let file = try FileDescriptor.open(path, O_RDWR | O_NOFOLLOW)
        let info = try file.status()
        size = Int(info.st_size)
        guard let record = try? FreezeJournalRecord.decode(try file.readAll(limit: 1 << 24)) else {
            throw SystemError("decode \(path)", errno: EINVAL)
        }
        let count = record.mounts.count
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, 0), base != MAP_FAILED
        else {
            throw SystemError("mmap \(path)")
        }
        mapping = FreezeJournalMapping(base: base, mountCount: count)
    }

    deinit { munmap(mapping.base, size) }

    /// The journal as it stands now.
    var record: FreezeJournalRecord? {
        let bytes = Array(UnsafeRawBufferPointer(start: mapping.base, count: size))
        return try? FreezeJournalRecord.decode(bytes)
    }
}
