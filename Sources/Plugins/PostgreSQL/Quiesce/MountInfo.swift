import PluginHostSupport

/// Which filesystem a path lies on, from the host's mount table (/proc/self/mountinfo): the
/// mount with the longest mount point that prefixes the real path. A filesystem is named by its
/// device number (major:minor), so bind mounts of one filesystem are one.
struct MountInfo: Sendable {
    struct Entry: Sendable, Equatable {
        var device: String
        var mountPoint: String
        var fsType: String
        var source: String

        var description: String { "\(mountPoint) (\(fsType) \(source))" }

        init(_ mount: MountEntry) {
            device = mount.device
            mountPoint = mount.mountPoint
            fsType = mount.fsType
            source = mount.source
        }
    }

    let table: [MountEntry]

    private init(table: [MountEntry]) { self.table = table }

    /// The table of this process's mount namespace; empty when it cannot be read.
    static func current() -> MountInfo {
        MountInfo(table: (try? MountTable.current()) ?? [])
    }

    /// Parses mountinfo text.
    init(parsing text: String) {
        table = MountTable.parse(text)
    }

    var entries: [Entry] { table.map(Entry.init) }

    /// The mount a real (symlink-free, absolute) path lies on.
    func entry(containing realPath: String) -> Entry? {
        table.entry(containing: realPath).map(Entry.init)
    }

    static func path(_ path: String, isInside directory: String) -> Bool {
        directory == "/" || path == directory || path.hasPrefix(directory + "/")
    }
}
