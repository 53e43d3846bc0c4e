public import Logging
import PluginHostSupport

/// The admin's view of plugins: `list` loads each one (without creating it), `check` creates
/// and checks each one — never quiescing anything.
public enum PluginInventory {
    /// Loads every plugin of the catalog (disabled ones too) in a worker and reports what it is.
    public static func inspect(_ catalog: PluginCatalog, executable: String, logger: Logger) -> [PluginRecord] {
        let set = PluginSet(catalog: catalog, operationID: "list", freezeTargets: [], start: Monotonic.now(), includeDisabled: true, setupStep: "checks")
        set.inspect(executable: executable, logger: logger)
        set.shutDown()
        return set.records
    }

    public struct CheckResult: Sendable {
        public var records: [PluginRecord]
        public var problems: [HostError]
        public var warnings: [String]
    }

    /// Creates every enabled plugin and calls its check: config, connection, privileges, paths.
    public static func check(_ catalog: PluginCatalog, freezeTargets: [FreezeTarget], executable: String,
                             logger: Logger) -> CheckResult {
        let set = PluginSet(catalog: catalog, operationID: "check", freezeTargets: freezeTargets, start: Monotonic.now(), setupStep: "checks")
        set.prepare(executable: executable, logger: logger)
        let problems = set.check()
        set.shutDown()
        return CheckResult(records: set.records, problems: problems, warnings: set.warnings)
    }
}
