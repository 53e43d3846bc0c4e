import CPluginHostShim
import Glibc

/// Whether a path lies on a filesystem an operation freezes: the one rule the host and the
/// bundled plugins share.
///
/// FIFREEZE freezes a superblock, so the question is which superblock holds the path. The
/// mount the path resolves on (its statx mount id) names it, by its device in
/// /proc/self/mountinfo. Every bind mount of a filesystem, and every btrfs subvolume in it,
/// is therefore covered when any mount of that filesystem is frozen — `st_dev` would call a
/// btrfs subvolume another filesystem, and a longest-prefix match on mount points can be fooled
/// by a path that crosses a symlink or an overmount.
public struct FreezeScope: Sendable {
    /// The mount table the answers come from.
    public let table: [MountEntry]
    /// The freeze mount points, with the superblock device of each (nil: not in the table).
    public let freezeMounts: [(mountPoint: String, device: String?)]

    /// `freezeMounts` are the mount points the operation freezes; `table` defaults to this
    /// process's /proc/self/mountinfo (empty when unreadable: nothing is then covered).
    public init(freezeMounts: [String], table: [MountEntry]? = nil) {
        let table = table ?? ((try? MountTable.current()) ?? [])
        self.table = table
        self.freezeMounts = freezeMounts.map { mount in (mount, Self.filesystem(holding: mount, in: table)?.device) }
    }

    /// True when the operation freezes anything (without freeze mounts nothing can be compared).
    public var isKnown: Bool { !freezeMounts.isEmpty }

    /// The mount through which `path` is reached, nil when it cannot be opened or identified.
    public func filesystem(holding path: String) -> MountEntry? {
        Self.filesystem(holding: path, in: table)
    }

    /// The freeze mount point whose filesystem holds `path`, nil when none does or `path` cannot
    /// be examined.
    public func freezeMount(holding path: String) -> String? {
        guard let device = filesystem(holding: path)?.device else { return nil }
        return freezeMounts.first { $0.device == device }?.mountPoint
    }

    /// O_PATH (Linux; Glibc's module does not export it): names the file without opening it,
    /// so a FIFO does not block and an unreadable file still counts.
    static let openPathOnly: Int32 = 0o10_000_000

    static func filesystem(holding path: String, in table: [MountEntry]) -> MountEntry? {
        let fd = open(path, Self.openPathOnly | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var mountID: UInt64 = 0
        guard ph_mount_id(fd, &mountID) == 0 else { return nil }
        return table.first { UInt64($0.id) == mountID }
    }
}
