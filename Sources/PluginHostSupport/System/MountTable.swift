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
    /// False when the mount point's bytes are not valid UTF-8: `mountPoint` then shows them
    /// escaped (`\xE9`), a name that cannot be opened, so such a mount cannot be frozen by name.
    public var mountPointIsValidUTF8 = true

    public var isReadOnly: Bool { mountOptions.contains("ro") || superOptions.contains("ro") }

    public init(
        id: Int, parentID: Int, device: String, root: String, mountPoint: String, mountOptions: [String],
        fsType: String, source: String, superOptions: [String]
    ) {
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
        parse(bytes: Array(text.utf8))
    }

    /// Parses mountinfo as the kernel writes it: bytes, paths in any encoding.
    public static func parse(bytes: [UInt8]) -> [MountEntry] {
        bytes.split(separator: 0x0A).compactMap(parseLine)
    }

    static func parseLine(_ line: ArraySlice<UInt8>) -> MountEntry? {
        let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        func text(_ field: ArraySlice<UInt8>) -> String { String(decoding: field, as: UTF8.self) }
        guard fields.count >= 10, let separator = fields.firstIndex(where: { $0.elementsEqual([UInt8(ascii: "-")]) }),
            separator >= 6,
            separator + 3 < fields.count,
            let id = Int(text(fields[0])), let parentID = Int(text(fields[1]))
        else { return nil }
        let mountPoint = unescape(fields[4])
        var entry = MountEntry(
            id: id,
            parentID: parentID,
            device: text(fields[2]),
            root: String(decoding: unescape(fields[3]), as: UTF8.self),
            mountPoint: String(validating: mountPoint, as: UTF8.self) ?? escaped(mountPoint),
            mountOptions: text(fields[5]).split(separator: ",").map(String.init),
            fsType: text(fields[separator + 1]),
            source: String(decoding: unescape(fields[separator + 2]), as: UTF8.self),
            superOptions: text(fields[separator + 3]).split(separator: ",").map(String.init)
        )
        entry.mountPointIsValidUTF8 = String(validating: mountPoint, as: UTF8.self) != nil
        return entry
    }

    /// The kernel writes space, tab, newline and backslash as \040, \011, \012 and \134.
    static func unescape(_ field: ArraySlice<UInt8>) -> [UInt8] {
        guard field.contains(UInt8(ascii: "\\")) else { return Array(field) }
        var bytes: [UInt8] = []
        let utf8 = Array(field)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
                let value = UInt8(String(decoding: utf8[index + 1...index + 3], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return bytes
    }

    /// A path that is not valid UTF-8, for messages: ASCII as is, every other byte as \xNN.
    static func escaped(_ bytes: [UInt8]) -> String {
        var text = ""
        for byte in bytes {
            if byte < 0x80 {
                text.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text
    }

    /// Reads the calling process's mount table.
    public static func current() throws(SystemError) -> [MountEntry] {
        let file = try FileDescriptor.open(path, 0)
        return parse(bytes: try file.readAll(limit: 64 << 20))
    }
}

extension Array where Element == MountEntry {
    /// The mount a real (symlink-free, absolute) path lies on: the longest mount point that is
    /// a prefix of it, the last one listed when mounts are stacked.
    public func entry(containing realPath: String) -> MountEntry? {
        var best: MountEntry?
        for entry in self
        where entry.mountPoint == "/" || realPath == entry.mountPoint || realPath.hasPrefix(entry.mountPoint + "/") {
            if best == nil || entry.mountPoint.utf8.count >= best!.mountPoint.utf8.count { best = entry }
        }
        return best
    }
}
