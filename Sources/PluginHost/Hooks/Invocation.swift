/// How the binary was called (README, "Hook names"). Under its own name, `pluginhost`, the command line is
/// parsed as it is. Under a hypervisor agent's hook name it is that hook and nothing else: its
/// first argument is the agent's action, never a top-level command — installed as VMware's
/// `pre-freeze-script`, `freeze` must not mean `pluginhost freeze` (which freezes every
/// filesystem). Under any other name it refuses and runs nothing.
public enum Invocation: Equatable, Sendable {
    /// Called as `pluginhost`, or one of its internal roles: the arguments as they are.
    case commandLine([String])
    /// Called under a hook name: the equivalent `pluginhost hook …` arguments.
    case hook(HookName, arguments: [String])
    /// Called under a name pluginhost does not answer to, or with an action the hook does not
    /// take: the message to print (exit 3, nothing run).
    case refused(String)

    /// The roles the binary re-executes itself in. They are spawned with the executable's real
    /// path as argv[0] (`/proc/self/exe` resolved), which is a hook name when the binary itself
    /// was copied to one; agents never pass these words.
    public static let internalRoles: Set<String> = ["__guard", "__worker", "__session", "__group"]

    /// `argv0` as the kernel got it, `arguments` the rest, `executable` the real path of the
    /// running binary.
    public static func resolve(argv0: String, arguments: [String], executable: String) -> Invocation {
        let name = basename(argv0)
        if name == "pluginhost" { return .commandLine(arguments) }
        if let first = arguments.first, internalRoles.contains(first), argv0 == executable {
            return .commandLine(arguments)
        }
        guard let hook = HookName(invokedAs: argv0) else {
            return .refused(
                """
                pluginhost: called as "\(name)" (\(argv0)), a name it does not answer to; nothing was run. \
                Call it as pluginhost, or install it under a hook name: fsfreeze-hook or a file in \
                fsfreeze-hook.d (QEMU guest agent), a file in backupScripts.d, pre-freeze-script or \
                post-thaw-script (VMware Tools).
                """)
        }
        guard let action = arguments.first else {
            return .refused(
                "pluginhost: called as \(hook.description) (\(argv0)) without an action; it takes \(hook.actionList). Nothing was run."
            )
        }
        if action == "--help" || action == "-h" { return .hook(hook, arguments: ["hook", hook.agent, "--help"]) }
        guard let canonical = hook.actions.first(where: { $0.lowercased() == action.lowercased() }) else {
            return .refused(
                "pluginhost: called as \(hook.description) (\(argv0)) with \"\(action)\"; it takes \(hook.actionList). Nothing was run."
            )
        }
        var rest = Array(arguments.dropFirst())
        var scriptArgument: [String] = []
        // VMware Tools passes its scriptArg as the argument after the action.
        if hook.agent == "vmware", let next = rest.first, !next.hasPrefix("--") {
            scriptArgument = ["--script-arg=\(next)"]
            rest.removeFirst()
        }
        return .hook(hook, arguments: ["hook", hook.agent, canonical] + rest + scriptArgument)
    }

    static func basename(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return String(trimmed) }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    static func parentName(_ path: String) -> String? {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return nil }
        return basename(String(path[..<slash]))
    }
}

/// The hook names pluginhost answers to, and the actions each agent calls them with.
public enum HookName: String, Equatable, Sendable, CaseIterable, CustomStringConvertible {
    /// qemu-ga's `-F`/`--fsfreeze-hook` (`fsfreeze-hook`), or a file in `fsfreeze-hook.d` run by
    /// the stock hook script.
    case qemu
    /// A file in VMware Tools' `backupScripts.d`.
    case vmware
    /// VMware Tools' legacy `/usr/sbin/pre-freeze-script`, run first, with `freeze`.
    case vmwarePreFreeze
    /// VMware Tools' legacy `/usr/sbin/post-thaw-script`, run last, with `thaw` or `freezeFail`.
    case vmwarePostThaw

    init?(invokedAs argv0: String) {
        let name = Invocation.basename(argv0)
        let parent = Invocation.parentName(argv0)
        if name == "fsfreeze-hook" || parent == "fsfreeze-hook.d" {
            self = .qemu
        } else if parent == "backupScripts.d" {
            self = .vmware
        } else if name == "pre-freeze-script" {
            self = .vmwarePreFreeze
        } else if name == "post-thaw-script" {
            self = .vmwarePostThaw
        } else {
            return nil
        }
    }

    public var agent: String { self == .qemu ? "qemu" : "vmware" }

    public var actions: [String] {
        switch self {
        case .qemu: ["freeze", "thaw"]
        case .vmware: ["freeze", "thaw", "freezeFail"]
        case .vmwarePreFreeze: ["freeze"]
        case .vmwarePostThaw: ["thaw", "freezeFail"]
        }
    }

    var actionList: String {
        actions.count == 1 ? actions[0] : actions.dropLast().joined(separator: ", ") + " or " + actions.last!
    }

    public var description: String {
        switch self {
        case .qemu: "the QEMU guest agent's fsfreeze hook"
        case .vmware: "a VMware Tools backupScripts.d script"
        case .vmwarePreFreeze: "VMware Tools' legacy pre-freeze-script"
        case .vmwarePostThaw: "VMware Tools' legacy post-thaw-script"
        }
    }
}
