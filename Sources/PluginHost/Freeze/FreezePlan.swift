public import PluginHostSupport

/// A filesystem the operation freezes, named by one of its mount points.
public struct FreezeTarget: Sendable, Equatable, Codable {
    public var mountPoint: String
    public var fsType: String
    public var source: String
    public var device: String
    /// The mount's id in mountinfo; the guard checks that the descriptor it opens is on it.
    public var mountID: Int
    /// Its dependency wave: every filesystem of wave n is frozen (concurrently) before any of
    /// wave n + 1, because the storage of a wave-n filesystem may lie on one of wave n + 1.
    public var wave: Int = 0

    public init(mountPoint: String, fsType: String, source: String, device: String, mountID: Int, wave: Int = 0) {
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.source = source
        self.device = device
        self.mountID = mountID
        self.wave = wave
    }
}

/// Chooses which filesystems to freeze, in which order (README, "What an operation does"; docs/ARCHITECTURE.md, "The freeze").
public enum FreezePlan {
    /// Block filesystems whose kernel driver implements freeze. Everything else (network, FUSE,
    /// overlay, tmpfs, proc-like, vfat without freeze support) is never frozen.
    public static let freezableTypes: Set<String> = [
        "ext2", "ext3", "ext4", "xfs", "btrfs", "jfs", "reiserfs", "f2fs", "nilfs2", "gfs2", "ocfs2", "bcachefs",
    ]

    /// Why a mount is not frozen, or nil when it is eligible.
    public static func ineligibility(of entry: MountEntry) -> String? {
        if !freezableTypes.contains(entry.fsType) {
            return "\(entry.fsType) is not a freezable block filesystem"
        }
        if entry.isReadOnly { return "mounted read-only" }
        return nil
    }

    public struct Selection: Sendable, Equatable {
        /// In freeze order: by dependency wave (a filesystem before the ones holding its
        /// storage), then children before parents, `/` last. Thaw runs in reverse.
        public var targets: [FreezeTarget]
        /// Mounts left out, with the reason (for `check`).
        public var skipped: [(mountPoint: String, reason: String)]

        public static func == (lhs: Selection, rhs: Selection) -> Bool {
            lhs.targets == rhs.targets && lhs.skipped.map(\.mountPoint) == rhs.skipped.map(\.mountPoint)
                && lhs.skipped.map(\.reason) == rhs.skipped.map(\.reason)
        }
    }

    public enum SelectionError: Error, Sendable, Equatable, CustomStringConvertible {
        case notAMountPoint(String)
        case notFreezable(String, reason: String)

        public var description: String {
            switch self {
            case .notAMountPoint(let path):
                "\(path) is not a mount point (name the directory a filesystem is mounted on)"
            case .notFreezable(let path, let reason): "\(path) cannot be frozen: \(reason)"
            }
        }
    }

    /// Selects from `entries`: every eligible filesystem, or only those mounted at `only`
    /// (paths already resolved), minus those at `skip`; one target per superblock; in
    /// dependency waves read from `storage`.
    public static func select(
        from entries: [MountEntry], only: [String] = [],
        skip: [String] = [], storage: StorageStack = .live
    ) throws(SelectionError) -> Selection {
        // The last entry for a mount point is the visible one (later mounts stack on top).
        var visible: [String: MountEntry] = [:]
        for entry in entries { visible[entry.mountPoint] = entry }

        var candidates: [MountEntry]
        if only.isEmpty {
            candidates = entries.filter { visible[$0.mountPoint]?.id == $0.id }
        } else {
            candidates = []
            for path in only {
                guard let entry = visible[path] else { throw .notAMountPoint(path) }
                if let reason = ineligibility(of: entry) { throw .notFreezable(path, reason: reason) }
                candidates.append(entry)
            }
        }

        var skipped: [(mountPoint: String, reason: String)] = []
        var chosen: [String: MountEntry] = [:]  // by device
        var order: [String] = []
        var duplicates: [(index: Int, device: String)] = []
        let skippedDevices = Set(skip.compactMap { visible[$0]?.device })
        for entry in candidates {
            if let reason = ineligibility(of: entry) {
                skipped.append((entry.mountPoint, reason))
                continue
            }
            if skip.contains(entry.mountPoint) || skippedDevices.contains(entry.device) {
                skipped.append((entry.mountPoint, "excluded by the skip list"))
                continue
            }
            if let existing = chosen[entry.device] {
                // One freeze per superblock: prefer the mount of the whole filesystem, then the
                // shortest path. The other mount points are the same filesystem.
                let better = isBetterRepresentative(entry, than: existing)
                if better { chosen[entry.device] = entry }
                // The reason names the mount finally chosen, known only after the loop.
                duplicates.append((skipped.count, entry.device))
                skipped.append(((better ? existing : entry).mountPoint, ""))
                continue
            }
            chosen[entry.device] = entry
            order.append(entry.device)
        }

        for (index, device) in duplicates {
            skipped[index].reason = "same filesystem as \(chosen[device]!.mountPoint)"
        }

        var targets = order.enumerated()
            .map { (position: $0.offset, entry: chosen[$0.element]!) }
            .sorted { a, b in
                let depthA = depth(a.entry.mountPoint)
                let depthB = depth(b.entry.mountPoint)
                // Deeper mount points first; among equals, later mounts first.
                return depthA != depthB ? depthA > depthB : a.position > b.position
            }
            .map {
                FreezeTarget(
                    mountPoint: $0.entry.mountPoint, fsType: $0.entry.fsType,
                    source: $0.entry.source, device: $0.entry.device, mountID: $0.entry.id)
            }
        for (index, wave) in storage.waves(for: targets).enumerated() { targets[index].wave = wave }
        // By wave, keeping the path order within each (a stable sort).
        targets = targets.enumerated().sorted { ($0.element.wave, $0.offset) < ($1.element.wave, $1.offset) }.map(
            \.element)
        return Selection(targets: targets, skipped: skipped)
    }

    static func depth(_ path: String) -> Int {
        path == "/" ? 0 : path.split(separator: "/").count
    }

    private static func isBetterRepresentative(_ entry: MountEntry, than existing: MountEntry) -> Bool {
        if (entry.root == "/") != (existing.root == "/") { return entry.root == "/" }
        return entry.mountPoint.count < existing.mountPoint.count
    }
}
