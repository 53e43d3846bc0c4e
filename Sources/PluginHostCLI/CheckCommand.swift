import ArgumentParser
import Logging
import PluginHost
import PluginHostSupport
import PluginHostWire

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run the checks an operation runs first and list every problem; freeze nothing.",
        discussion:
            """
            Lists the filesystems an operation would freeze, in freeze order, with their dependency waves. Exits 0 \
            when no problem is found, 3 otherwise.
            """
    )

    @OptionGroup var plan: PlanOptions
    @OptionGroup var group: GroupOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        _ = bootstrapLogging(verbose: output.verbose)
        var request = plan.request()
        request.group = group.fields
        let preflight = Preflight.run(request)
        let plugins = PluginInventory.check(
            preflight.plugins,
            freezeTargets: preflight.fsFreezeEnabled ? preflight.freezeSelection?.targets ?? [] : [],
            executable: currentExecutable(), logger: Logger(label: "pluginhost"))
        var result = CheckResult(preflight, plugins: plugins)
        if let settings = preflight.group {
            // The group's etcd, reached as an operation would (TLS included), without joining.
            let answer = GroupStatus.ask(settings.processArguments + ["--query", settings.name])
            var check = CheckResult.GroupCheck(
                name: settings.name, member: settings.member, members: settings.members,
                etcd: settings.endpoints.map(\.description), reachable: false)
            if case .string(let message)? = answer?["error"] {
                check.message = message
            } else if case .bool(let active)? = answer?["active"] {
                check.reachable = true
                if active, case .string(let operation)? = answer?["operationID"] { check.runningOperation = operation }
            } else {
                check.message = "the group process gave no answer"
            }
            if !check.reachable {
                result.problems.append(
                    HostError(
                        .groupCoordinatorUnreachable, "group \(settings.name): etcd: \(check.message ?? "")",
                        step: "checks"))
            }
            result.group = check
        }
        if output.json {
            try printJSON(result)
        } else {
            FileHandleOutput.standardOutput.write(result.text)
        }
        throw ExitCode(result.problems.isEmpty ? ExitStatus.success.rawValue : ExitStatus.invalid.rawValue)
    }
}

/// What `check` reports, for both renderings.
struct CheckResult: Encodable {
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion
    var configFile: String?
    var config: ConfigSummary?
    var freezeEnabled: Bool
    var freezeOrder: [FreezeTarget]
    var notFrozen: [NotFrozen]
    var maxFrozenSeconds: Double
    var pluginsDirectory: String
    var plugins: [PluginRecord]
    var problems: [HostError]
    var warnings: [String]
    var group: GroupCheck?

    /// The consistency group: whether its etcd answers, and whether an operation of it runs.
    struct GroupCheck: Encodable {
        var name: String
        var member: String
        var members: Int
        var etcd: [String]
        var reachable: Bool
        var runningOperation: String?
        var message: String?
    }

    var kernel = Kernel()

    /// The kernel interfaces in use, and the fallbacks where the kernel lacks one.
    struct Kernel: Encodable {
        var release = KernelFeature.kernelRelease
        var fallbacksForced = KernelFeature.fallbacksForced
        var features = KernelFeature.probe()
    }

    struct ConfigSummary: Encodable {
        var preScript: String
        var postScript: String
        /// How each script that passed its checks will be started: its #! interpreter, or
        /// /bin/sh (no #! line, or no owner execute bit), as Azure runs every script.
        var preScriptRunsWith: String?
        var postScriptRunsWith: String?
        var timeoutInSeconds: Int
        var preScriptNoOfRetries: Int
        var postScriptNoOfRetries: Int
        var continueBackupOnFailure: Bool
        var fsFreezeEnabled: Bool
    }

    struct NotFrozen: Encodable {
        var mountPoint: String
        var reason: String
    }

    init(_ preflight: Preflight, plugins check: PluginInventory.CheckResult) {
        if case .loaded(let config, let path) = preflight.config {
            configFile = path
            self.config = ConfigSummary(
                preScript: config.preScript.location, postScript: config.postScript.location,
                preScriptRunsWith: preflight.scriptInterpreters[.pre],
                postScriptRunsWith: preflight.scriptInterpreters[.post],
                timeoutInSeconds: config.timeoutSeconds, preScriptNoOfRetries: config.preScript.retries,
                postScriptNoOfRetries: config.postScript.retries,
                continueBackupOnFailure: config.continueBackupOnFailure, fsFreezeEnabled: config.fsFreezeEnabled)
        }
        freezeEnabled = preflight.fsFreezeEnabled
        freezeOrder = preflight.freezeSelection?.targets ?? []
        notFrozen =
            preflight.freezeSelection?.skipped.map { NotFrozen(mountPoint: $0.mountPoint, reason: $0.reason) } ?? []
        maxFrozenSeconds = preflight.maxFrozenSeconds
        pluginsDirectory = preflight.plugins.directory
        plugins = check.records
        // The catalog's refusals are in both lists; keep them once.
        problems = preflight.problems + check.problems.filter { !preflight.problems.contains($0) }
        warnings = preflight.warnings + check.warnings
    }

    var text: String {
        var out = ""
        if let config, let configFile {
            out += "Config \(configFile)\n"
            out += TextTable(rows: [
                [
                    "  pre-script", config.preScript, "retries \(config.preScriptNoOfRetries)",
                    config.preScriptRunsWith.map { "runs with \($0)" } ?? "",
                ],
                [
                    "  post-script", config.postScript, "retries \(config.postScriptNoOfRetries)",
                    config.postScriptRunsWith.map { "runs with \($0)" } ?? "",
                ],
                ["  timeout", "\(config.timeoutInSeconds) s per attempt", "", ""],
                ["  continueBackupOnFailure", "\(config.continueBackupOnFailure)", "", ""],
                ["  fsFreezeEnabled", "\(config.fsFreezeEnabled)", "", ""],
            ]).render()
        } else {
            out += "Config: none loaded\n"
        }
        if freezeEnabled {
            out +=
                """
                \nWould freeze, in this order (each wave at once, the next when it is frozen; thaw in reverse; \
                deadline \(formatNumber(maxFrozenSeconds)) s):\n
                """
            out +=
                freezeOrder.isEmpty
                ? "  (nothing)\n"
                : TextTable(
                    rows: freezeOrder.enumerated().map {
                        [
                            "  \($0.offset + 1).", "wave \($0.element.wave)", $0.element.mountPoint, $0.element.fsType,
                            $0.element.source,
                        ]
                    }
                ).render()
            if !notFrozen.isEmpty {
                out += "Not frozen:\n" + TextTable(rows: notFrozen.map { ["  " + $0.mountPoint, $0.reason] }).render()
            }
        } else {
            out += "\nFreeze: off (fsFreezeEnabled is false)\n"
        }
        out += "\nKernel \(kernel.release)\(kernel.fallbacksForced ? " (every fallback forced)" : ""):\n"
        out += TextTable(
            rows: kernel.features.map { feature in
                [
                    "  " + feature.name, "(Linux \(feature.since))",
                    feature.used
                        ? "used" : (feature.available ? "available, " : "missing, ") + "fallback: " + feature.fallback,
                ]
            }
        ).render()
        out += "\nPlugins in \(pluginsDirectory):\n"
        out +=
            plugins.isEmpty
            ? "  (none)\n"
            : TextTable(
                rows: plugins.map { record in
                    let check = record.calls.last { $0.function == .check }
                    let details =
                        check?.details.map {
                            $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                        } ?? ""
                    return [
                        "  " + record.name, record.version ?? "-", "order \(record.order.map(String.init) ?? "-")",
                        record.refusal.map { "refused: \($0)" } ?? check.map {
                            $0.outcome == .ok
                                ? "check ok \(details)" : "check \($0.outcome.rawValue): \($0.message ?? "")"
                        } ?? record.state.rawValue,
                    ]
                }
            ).render()
        if let group {
            out +=
                "\nGroup \(group.name): member \(group.member) of \(group.members), etcd \(group.etcd.joined(separator: ","))"
            out +=
                group.reachable
                ? ": reachable, " + (group.runningOperation.map { "operation \($0) running" } ?? "idle") + "\n"
                : ": NOT reachable: \(group.message ?? "")\n"
        }
        if !warnings.isEmpty { out += "\nWarnings:\n" + warnings.map { "  \($0)\n" }.joined() }
        out +=
            problems.isEmpty
            ? "\nNo problems found.\n"
            : "\n\(problems.count) problem\(problems.count == 1 ? "" : "s"):\n"
                + problems.map { "  \($0.code.rawValue): \($0.message)\n" }.joined()
        return out
    }
}
