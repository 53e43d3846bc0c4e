import Glibc
public import PluginHostSupport

/// The hypervisor agents whose hook conventions pluginhost follows.
public enum HookAgent: String, Sendable, CaseIterable {
    /// The QEMU guest agent's fsfreeze hook.
    case qemu
    /// VMware Tools' backupScripts.d.
    case vmware

    /// The agent's name for people.
    public var displayName: String {
        switch self {
        case .qemu: "the QEMU guest agent"
        case .vmware: "VMware Tools"
        }
    }
}

/// How the snapshot is taken.
public enum OperationMode {
    /// `pluginhost run`: the host runs the snapshot command while frozen.
    case run
    /// `pluginhost freeze` … `pluginhost thaw`: an agent takes the snapshot in between.
    case twoPhase(any SessionLink)
    /// A hypervisor agent's hook (QEMU guest agent, VMware Tools): the agent freezes and takes
    /// the snapshot; the host only runs scripts and plugins around it.
    case hook(agent: HookAgent, any SessionLink)

    public var name: String {
        switch self {
        case .run: "run"
        case .twoPhase: "freeze"
        case .hook(let agent, _): "hook \(agent.rawValue)"
        }
    }

    public var channel: (any SessionLink)? {
        switch self {
        case .run: nil
        case .twoPhase(let channel), .hook(_, let channel): channel
        }
    }

    /// True when an agent, not the host, freezes the filesystems.
    public var agentFreezes: Bool { agent != nil }

    /// The agent whose hook this is, if it is one.
    public var agent: HookAgent? {
        if case .hook(let agent, _) = self { return agent }
        return nil
    }
}

/// What an operation is asked to do.
public struct OperationRequest {
    public var mode: OperationMode = .run
    /// `--config`; nil reads the default Azure path, where a missing file means scripts off.
    public var configPath: String?
    /// `--host-config`; nil reads the default path, where a missing file is fine.
    public var hostConfigPath: String?
    /// `--mount`: restrict the freeze to these mount points.
    public var mounts: [String] = []
    /// `--skip`: never freeze these.
    public var skipMounts: [String] = []
    /// `--max-frozen`: the guard's deadline.
    public var maxFrozenSeconds: Double?
    /// The snapshot command, run while frozen.
    public var snapshotCommand: [String] = []
    /// `--plugins-dir`; nil reads /etc/pluginhost/plugins.d, which may be absent.
    public var pluginsDirectory: String?
    public var paths = StatePaths()
    /// false: keep what the operation starts in process groups only, even where cgroups work
    /// (PLUGINHOST_CGROUPS=off; for testing the fallback).
    public var cgroups = true
    /// The argument VMware Tools passed after the action (its scriptArg), recorded in the report.
    public var hookScriptArg: String?
    /// `--hold-limit`: how long a hook session waits for the agent's thaw.
    public var hookHoldLimitSeconds: Double?
    /// The host binary, re-executed as the freeze guard.
    public var executable: String
    /// `--group`, `--member`, … : the consistency group to take part in (merged with the host
    /// config's `group`).
    public var group = GroupFields()

    public init(executable: String) {
        self.executable = executable
    }
}

/// The checks that run before anything else (README, "What an operation does"): config, scripts, host setup, and the
/// filesystems to freeze. `pluginhost check` runs exactly these; an operation runs them first.
/// Every problem is collected, not only the first.
public struct Preflight {
    public enum ConfigState: Sendable {
        case absent
        case loaded(ScriptConfig, path: String)
        case invalid(HostError)
    }

    public var config: ConfigState
    /// An invalid but trusted config's own continueBackupOnFailure, when it states one.
    public var invalidConfigContinueBackupOnFailure: Bool?
    /// The real paths of the scripts that passed their checks, by phase.
    public var scripts: [ScriptPhase: String] = [:]
    /// Script problems by phase (not found, permissions).
    public var scriptProblems: [ScriptPhase: HostError] = [:]
    public var hostConfig = HostConfig()
    /// Every plugin manifest found, verified or refused.
    public var plugins = PluginCatalog(directory: "", entries: [], warnings: [])
    public var freezeSelection: FreezePlan.Selection?
    /// The consistency group this operation takes part in, checked.
    public var group: GroupSettings?
    /// Problems that make the request itself invalid (bad --mount, host config, nothing to freeze).
    public var setupProblems: [HostError] = []
    public var warnings: [String] = []

    /// Every problem found, in a stable order.
    public var problems: [HostError] {
        var all = setupProblems
        if case .invalid(let error) = config { all.append(error) }
        for phase in [ScriptPhase.pre, .post] { if let problem = scriptProblems[phase] { all.append(problem) } }
        return all + plugins.refusals
    }

    public var scriptConfig: ScriptConfig? {
        if case .loaded(let config, _) = config { return config }
        return nil
    }

    /// The config's continueBackupOnFailure — also for a trusted file with a bad field, which
    /// still says whether its failure should fail the backup (default true, as in Azure).
    public var continueBackupOnFailure: Bool {
        scriptConfig?.continueBackupOnFailure ?? invalidConfigContinueBackupOnFailure ?? true
    }

    /// How each script that passed its checks will be started (`check` shows it).
    public var scriptInterpreters: [ScriptPhase: String] {
        scripts.mapValues(ScriptRunner.interpreter(for:))
    }
    public var fsFreezeEnabled: Bool { scriptConfig?.fsFreezeEnabled ?? true }

    public var maxFrozenSeconds: Double = FreezeGuard.defaultDeadlineSeconds
    public var hookHoldLimitSeconds: Double = HostConfig.defaultHookHoldLimitSeconds

    /// The operation's time limit (host config `maxOperationSeconds`).
    public var maxOperationSeconds: Int { hostConfig.maxOperationSeconds ?? HostConfig.defaultOperationSeconds }

    public static func run(_ request: OperationRequest, mountTable: [MountEntry]? = nil) -> Preflight {
        var preflight: Preflight
        let (loaded, declaredContinue) = ConfigLoader.loadKeepingPolicy(explicitPath: request.configPath)
        switch loaded {
        case .success(.absent):
            preflight = Preflight(config: .absent)
            preflight.warnings.append("no config file at \(ScriptConfig.defaultPath): pre- and post-scripts are off")
        case .success(.loaded(let config, let path, let warnings)):
            preflight = Preflight(config: .loaded(config, path: path))
            preflight.warnings += warnings.map { "\(path): \($0)" }
            preflight.checkScript(.pre, config.preScript.location)
            preflight.checkScript(.post, config.postScript.location)
        case .failure(let error):
            preflight = Preflight(config: .invalid(error))
            preflight.invalidConfigContinueBackupOnFailure = declaredContinue
        }

        switch HostConfig.load(path: request.hostConfigPath) {
        case .success(let hostConfig): preflight.hostConfig = hostConfig
        case .failure(let error): preflight.setupProblems.append(error)
        }
        if let seconds = request.maxFrozenSeconds ?? preflight.hostConfig.maxFrozenSeconds {
            preflight.maxFrozenSeconds = seconds
        }
        if let seconds = request.hookHoldLimitSeconds ?? preflight.hostConfig.hookHoldLimitSeconds {
            preflight.hookHoldLimitSeconds = seconds
        }
        if preflight.fsFreezeEnabled {
            preflight.selectMounts(request, mountTable: mountTable)
        }
        let group = GroupSettings.resolve(request.group.merged(over: preflight.hostConfig.group))
        preflight.group = group.settings
        preflight.setupProblems += group.problems
        preflight.plugins = PluginCatalog.load(directory: request.pluginsDirectory)
        preflight.warnings += preflight.plugins.warnings
        return preflight
    }

    private mutating func checkScript(_ phase: ScriptPhase, _ location: String) {
        let key = phase == .pre ? "preScriptLocation" : "postScriptLocation"
        guard location.hasPrefix("/") else {
            // Azure finds no file there either (a template's unexpanded @BINDIR@/…, an empty sample).
            let what = location.isEmpty ? "is empty" : "\"\(location)\" is not an absolute path"
            scriptProblems[phase] = HostError(
                phase.notFoundCode, "\(phase.stepName): \(key) \(what), so no script is found there",
                step: "checks")
            return
        }
        switch FileTrust.verify(location, rule: .script) {
        case .success(let real):
            scripts[phase] = real
        case .failure(let failure):
            let code: ErrorCode
            switch failure {
            case .missing, .danglingSymlink: code = phase.notFoundCode
            default: code = phase.permissionCode
            }
            scriptProblems[phase] = HostError(code, "\(phase.stepName) \(failure)", step: "checks")
        }
    }

    private mutating func selectMounts(_ request: OperationRequest, mountTable: [MountEntry]?) {
        let table: [MountEntry]
        do {
            table = try mountTable ?? MountTable.current()
        } catch {
            setupProblems.append(HostError(.freezeFailed, "cannot read \(MountTable.path): \(error)", step: "checks"))
            return
        }
        let only = request.mounts.isEmpty ? hostConfig.mounts : request.mounts
        let skip = request.skipMounts + hostConfig.skipMounts
        // A mount point that is not valid UTF-8 cannot be named, so it cannot be opened to be
        // frozen: refuse here, clearly, rather than fail at the freeze. Named mounts
        // (--mount, the host config) leave it out; a bind mount of it elsewhere freezes it too.
        let named = table.filter(\.mountPointIsValidUTF8)
        if only.isEmpty {
            let reachable = Set(named.filter { FreezePlan.ineligibility(of: $0) == nil }.map(\.device))
            for entry in table
            where !entry.mountPointIsValidUTF8 && FreezePlan.ineligibility(of: entry) == nil
                && !reachable.contains(entry.device)
            {
                setupProblems.append(
                    HostError(
                        .freezeFailed,
                        """
                        the mount point \(entry.mountPoint) (\(entry.fsType) on \(entry.source)) is not valid UTF-8, \
                        so it cannot be frozen by name: rename it, or name the filesystems to freeze with --mount (or \
                        mounts in the host config)
                        """,
                        step: "checks"))
            }
        }
        do {
            let selection = try FreezePlan.select(
                from: named, only: only.map(Self.resolved),
                skip: skip.map(Self.resolved))
            freezeSelection = selection
            if selection.targets.isEmpty {
                setupProblems.append(
                    HostError(
                        .freezeFailed,
                        "no filesystem left to freeze; check --mount and --skip, or set fsFreezeEnabled to false",
                        step: "checks"))
            }
            // The journal and the lock are written while frozen: their directory must stay writable.
            if let device = Self.filesystemDevice(ofNearest: request.paths.runDirectory),
                let frozen = selection.targets.first(where: { $0.device == device })
            {
                setupProblems.append(
                    HostError(
                        .freezeFailed,
                        """
                        the runtime directory \(request.paths.runDirectory) is on \(frozen.mountPoint), which would be \
                        frozen; the freeze journal is written while frozen: put it on a filesystem that is not frozen \
                        (tmpfs /run, or PLUGINHOST_RUN_DIR) or skip \(frozen.mountPoint)
                        """,
                        step: "checks"))
            }
        } catch {
            setupProblems.append(HostError(.freezeFailed, error.description, step: "checks"))
        }
    }

    /// The device of the filesystem holding `path`, or its nearest existing ancestor.
    static func filesystemDevice(ofNearest path: String) -> String? {
        var current = path
        while true {
            if let device = StorageStack.live.filesystemDevice(current) { return device }
            let parent = FileTrust.parent(of: current)
            if parent == current { return nil }
            current = parent
        }
    }

    /// The real path of a directory named on the command line (unchanged if it cannot be resolved,
    /// so that the error names what the user typed).
    static func resolved(_ path: String) -> String {
        if case .success(let real) = FileTrust.resolve(path) { return real }
        return path
    }
}
