import PluginHostSupport

/// Where a cluster keeps its files on this machine: the data directory, the WAL directory
/// (pg_wal, often a symlink to another volume) and every tablespace, each resolved to its real
/// path and the filesystem it lies on. A snapshot is consistent for the cluster only if all of
/// them are in it, taken at one instant.
struct ClusterLayout: Sendable {
    struct Location: Sendable {
        /// Details key prefix: `data_directory`, `wal_directory`, `tablespace.1`.
        var key: String
        /// For people: "data directory", "WAL directory", "tablespace fast".
        var name: String
        /// As the server reports it.
        var path: String
        /// After resolving symlinks; nil when it does not exist on this machine.
        var realPath: String?
        var filesystem: MountInfo.Entry?
    }

    var locations: [Location]

    init(dataDirectory: String, tablespaces: [(name: String, location: String)], mounts: MountInfo) {
        func locate(_ key: String, _ name: String, _ path: String) -> Location {
            let real = try? CredentialFiles.resolve(path).get()
            return Location(
                key: key, name: name, path: path, realPath: real,
                filesystem: real.flatMap { mounts.entry(containing: $0) })
        }
        var locations = [
            locate("data_directory", "data directory", dataDirectory),
            locate("wal_directory", "WAL directory", dataDirectory + "/pg_wal"),
        ]
        for (index, tablespace) in tablespaces.enumerated() {
            // In-place tablespaces (allow_in_place_tablespaces) report a path relative to the data directory.
            let path =
                tablespace.location.hasPrefix("/") ? tablespace.location : dataDirectory + "/" + tablespace.location
            locations.append(locate("tablespace.\(index + 1)", "tablespace \(tablespace.name)", path))
        }
        self.locations = locations
    }

    /// The real paths (or as reported, when missing here), data directory first, without repeats.
    var paths: [String] {
        var seen = Set<String>()
        return locations.map { $0.realPath ?? $0.path }.filter { seen.insert($0).inserted }
    }

    /// Why each location is not covered by a freeze of `freezeMounts` (the mount points the
    /// operation freezes): a location is covered when it lies on the same filesystem (device)
    /// as one of them. Empty when `freezeMounts` is empty (nothing is frozen; nothing to compare).
    func warnings(freezeMounts: [String], mounts: MountInfo) -> [String] {
        guard !freezeMounts.isEmpty else { return [] }
        let scope = FreezeScope(freezeMounts: freezeMounts, table: mounts.table)
        var warnings: [String] = []
        for location in locations {
            guard let real = location.realPath else {
                warnings.append(
                    """
                    the \(location.name) \(location.path) does not exist on this machine: is the server on another \
                    host? The snapshot of this machine cannot contain it
                    """
                )
                continue
            }
            guard let filesystem = location.filesystem else {
                warnings.append("the \(location.name) \(real) lies on no filesystem listed in /proc/self/mountinfo")
                continue
            }
            if scope.freezeMount(holding: real) == nil {
                warnings.append(
                    """
                    the \(location.name) \(real) lies on \(filesystem.description), which this operation does not \
                    freeze (it freezes \(freezeMounts.joined(separator: ", "))): the snapshot would not be consistent \
                    for this cluster
                    """
                )
            }
        }
        return warnings
    }
}
