import Glibc

/// Where the server keeps what a consistent snapshot must contain, from its global variables.
/// Relative InnoDB/Aria settings are relative to the data directory, as the server reads them.
struct DataDirectories: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        /// The details key: `datadir`, `innodb_log_dir`, `binlog_dir`, ….
        var key: String
        /// Absolute, as the server configured it.
        var path: String
        /// After realpath(3) on this machine; nil when it cannot be resolved here.
        var resolved: String?
    }

    var entries: [Entry]
    var binlogEnabled: Bool

    /// The variables read (a missing one — another flavor or version — is simply absent).
    static let query = """
        SHOW GLOBAL VARIABLES WHERE Variable_name IN ('datadir', 'innodb_data_home_dir', \
        'innodb_log_group_home_dir', 'innodb_undo_directory', 'aria_log_dir_path', 'log_bin', 'log_bin_basename')
        """

    static func from(variables result: ResultSet) -> DataDirectories {
        var values: [String: String] = [:]
        for row in result.rows where row.count >= 2 {
            if let name = row[0] { values[name.lowercased()] = row[1] ?? "" }
        }
        let datadir = values["datadir"].map(normalize) ?? ""
        func underDatadir(_ value: String?) -> String? {
            guard let value, !value.isEmpty else { return datadir.isEmpty ? nil : datadir }
            if value.hasPrefix("/") { return normalize(value) }
            return datadir.isEmpty ? nil : normalize(datadir + "/" + value)
        }
        var entries: [Entry] = []
        if !datadir.isEmpty { entries.append(Entry(key: "datadir", path: datadir)) }
        if values.keys.contains("innodb_data_home_dir"), let path = underDatadir(values["innodb_data_home_dir"]) {
            entries.append(Entry(key: "innodb_data_dir", path: path))
        }
        if values.keys.contains("innodb_log_group_home_dir"),
            let path = underDatadir(values["innodb_log_group_home_dir"])
        {
            entries.append(Entry(key: "innodb_log_dir", path: path))
        }
        if values.keys.contains("innodb_undo_directory"), let path = underDatadir(values["innodb_undo_directory"]) {
            entries.append(Entry(key: "innodb_undo_dir", path: path))
        }
        if values.keys.contains("aria_log_dir_path"), let path = underDatadir(values["aria_log_dir_path"]) {
            entries.append(Entry(key: "aria_log_dir", path: path))
        }
        let binlogEnabled = ["ON", "1"].contains(values["log_bin"]?.uppercased() ?? "")
        if binlogEnabled, let base = values["log_bin_basename"], !base.isEmpty, let file = underDatadir(base),
            let slash = file.lastIndex(of: "/")
        {
            let directory = String(file[..<slash])
            entries.append(Entry(key: "binlog_dir", path: directory.isEmpty ? "/" : directory))
        }
        return DataDirectories(entries: entries, binlogEnabled: binlogEnabled)
    }

    /// Resolves every path on this machine (symlinks, `..`).
    func resolved() -> DataDirectories {
        var copy = self
        for index in copy.entries.indices {
            copy.entries[index].resolved = Self.realPath(copy.entries[index].path)
        }
        return copy
    }

    /// The distinct directories, resolved where possible, in order.
    var distinctPaths: [String] {
        var seen = Set<String>()
        return entries.compactMap { entry in
            let path = entry.resolved ?? entry.path
            return seen.insert(path).inserted ? path : nil
        }
    }

    /// Collapses `//`, `/./` and a trailing `/` (not `..`: realpath does that on this machine).
    static func normalize(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
