import Glibc
import PluginHostSupport

/// Which filesystem a path lies on, from /proc/self/mountinfo: the mount with the longest mount
/// point that prefixes the real path (the last one listed when mounts are stacked). A filesystem
/// is named by its device number (major:minor), so bind mounts of one filesystem are one.
struct MountInfo: Sendable {
    struct Entry: Sendable, Equatable {
        var device: String
        var mountPoint: String
        var fsType: String
        var source: String

        var description: String { "\(mountPoint) (\(fsType) \(source))" }
    }

    var entries: [Entry]

    init(entries: [Entry]) { self.entries = entries }

    /// The table of this process's mount namespace; empty when it cannot be read.
    static func current() -> MountInfo {
        guard let file = try? FileDescriptor.open("/proc/self/mountinfo", O_RDONLY),
              let bytes = try? file.readAll(limit: 16 << 20) else { return MountInfo(entries: []) }
        return MountInfo(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Parses mountinfo lines: `id parent major:minor root mountpoint options [tags] - type source super`.
    init(parsing text: String) {
        var entries: [Entry] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else { continue }
            entries.append(Entry(device: String(fields[2]), mountPoint: Self.unescape(fields[4]),
                                 fsType: String(fields[dash + 1]), source: Self.unescape(fields[dash + 2])))
        }
        self.entries = entries
    }

    /// The mount a real (symlink-free, absolute) path lies on.
    func entry(containing realPath: String) -> Entry? {
        var best: Entry?
        for entry in entries where Self.path(realPath, isInside: entry.mountPoint) {
            if best == nil || entry.mountPoint.utf8.count >= best!.mountPoint.utf8.count { best = entry }
        }
        return best
    }

    static func path(_ path: String, isInside directory: String) -> Bool {
        directory == "/" || path == directory || path.hasPrefix(directory + "/")
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        let source = Array(field.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
               let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
