public import Logging
import PluginHostSupport

/// The admin's view of plugins: `list` loads each one (without creating it), `check` creates
/// and checks each one — never quiescing anything.
public enum PluginInventory {
    /// Plugins loaded at once by `inspect`: its descriptors stay bounded however many
    /// manifests there are.
    static let inspectionBatch = 16

    /// Loads every plugin of the catalog (disabled ones too: their libraries are verified here)
    /// in a worker and reports what it is, a batch at a time.
    public static func inspect(_ catalog: PluginCatalog, executable: String, logger: Logger) -> [PluginRecord] {
        var records: [PluginRecord] = []
        var index = catalog.entries.startIndex
        while index < catalog.entries.endIndex {
            let end = min(index + inspectionBatch, catalog.entries.endIndex)
            let batch = catalog.entries[index..<end].map { entry in
                guard entry.state == .disabled, entry.library == nil, let manifest = entry.manifest else {
                    return entry
                }
                return PluginCatalog.verifyLibrary(of: manifest, manifestPath: entry.manifestPath)
            }
            let part = PluginCatalog(directory: catalog.directory, entries: batch, warnings: [])
            let set = PluginSet(
                catalog: part, operationID: "list", freezeTargets: [], start: Monotonic.Instant.now,
                includeDisabled: true,
                setupStep: "checks")
            set.inspect(executable: executable, logger: logger)
            set.shutDown()
            records += set.records
            index = end
        }
        return records.sorted { $0.manifest < $1.manifest }
    }

    /// Loads and creates one plugin with its config, as an operation's prepare step would, and
    /// destroys it: `plugin add` refuses what the plugin itself refuses. Never checks or quiesces.
    static func trial(_ catalog: PluginCatalog, executable: String, logger: Logger) -> (
        record: PluginRecord, problems: [HostError]
    ) {
        let set = PluginSet(
            catalog: catalog, operationID: "plugin-add", freezeTargets: [], start: Monotonic.Instant.now,
            setupStep: "checks")
        set.prepare(executable: executable, logger: logger)
        let problems = set.problems
        set.shutDown()
        return (set.records[0], problems)
    }

    public struct CheckResult: Sendable {
        public var records: [PluginRecord]
        public var problems: [HostError]
        public var warnings: [String]
    }

    /// Creates every enabled plugin and calls its check: config, connection, privileges, paths.
    public static func check(
        _ catalog: PluginCatalog, freezeTargets: [FreezeTarget], executable: String,
        logger: Logger
    ) -> CheckResult {
        let set = PluginSet(
            catalog: catalog, operationID: "check", freezeTargets: freezeTargets, start: Monotonic.Instant.now,
            setupStep: "checks")
        set.prepare(executable: executable, logger: logger)
        let problems = set.check()
        set.shutDown()
        return CheckResult(records: set.records, problems: problems, warnings: set.warnings)
    }
}
