/// One line of `/proc/self/mountinfo` (proc(5)).
public struct MountEntry: Sendable, Equatable {
    public var id: Int
    public var parentID: Int
    /// The superblock's device, "major:minor": equal for every bind mount of one filesystem.
    public var device: String
    /// The directory of the filesystem that is mounted here ("/" unless a bind mount of a subtree).
    public var root: String
    public var mountPoint: String
    public var mountOptions: [String]
    public var fsType: String
    public var source: String
    public var superOptions: [String]

    public var isReadOnly: Bool { mountOptions.contains("ro") || superOptions.contains("ro") }

    public init(id: Int, parentID: Int, device: String, root: String, mountPoint: String, mountOptions: [String],
                fsType: String, source: String, superOptions: [String]) {
        self.id = id
        self.parentID = parentID
        self.device = device
        self.root = root
        self.mountPoint = mountPoint
        self.mountOptions = mountOptions
        self.fsType = fsType
        self.source = source
        self.superOptions = superOptions
    }
}

public enum MountTable {
    public static let path = "/proc/self/mountinfo"

    /// Parses mountinfo text; malformed lines are skipped (the kernel writes none).
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { parseLine(Substring($0)) }
    }

    static func parseLine(_ line: Substring) -> MountEntry? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 10, let separator = fields.firstIndex(of: "-"), separator >= 6,
              separator + 3 < fields.count,
              let id = Int(fields[0]), let parentID = Int(fields[1]) else { return nil }
        return MountEntry(
            id: id,
            parentID: parentID,
            device: String(fields[2]),
            root: unescape(fields[3]),
            mountPoint: unescape(fields[4]),
            mountOptions: fields[5].split(separator: ",").map(String.init),
            fsType: String(fields[separator + 1]),
            source: unescape(fields[separator + 2]),
            superOptions: fields[separator + 3].split(separator: ",").map(String.init)
        )
    }

    /// The kernel writes space, tab, newline and backslash as \040, \011, \012 and \134.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[index + 1...index + 3], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads the calling process's mount table.
    public static func current() throws(SystemError) -> [MountEntry] {
        let file = try FileDescriptor.open(path, 0)
        return parse(String(decoding: try file.readAll(limit: 64 << 20), as: UTF8.self))
    }
}

extension Array where Element == MountEntry {
    /// The mount a real (symlink-free, absolute) path lies on: the longest mount point that is
    /// a prefix of it, the last one listed when mounts are stacked.
    public func entry(containing realPath: String) -> MountEntry? {
        var best: MountEntry?
        for entry in self where entry.mountPoint == "/" || realPath == entry.mountPoint || realPath.hasPrefix(entry.mountPoint + "/") {
            if best == nil || entry.mountPoint.utf8.count >= best!.mountPoint.utf8.count { best = entry }
        }
        return best
    }
}
