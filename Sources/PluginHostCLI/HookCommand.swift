import ArgumentParser
import PluginHost

/// Hypervisor agents' hooks: the agent freezes and takes the snapshot; pluginhost runs the
/// pre-script and quiesces the plugins before (`freeze`), and resumes them and runs the
/// post-script after (`thaw`), holding the plugin sessions in between.
struct HookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook",
        abstract: "Hook adapters for hypervisor agents that freeze by themselves (QEMU guest agent, VMware Tools).",
        discussion: """
            QEMU guest agent: install as /etc/qemu/fsfreeze-hook.d/pluginhost (a symlink to the binary, or a
            script running `pluginhost hook qemu "$@"`); it is called with freeze before the agent freezes and
            thaw after it thaws. VMware Tools: /etc/vmware-tools/backupScripts.d/pluginhost, called with
            freeze, then thaw or freezeFail. Exit 0 lets the agent go on; non-zero on freeze aborts its snapshot.
            """,
        subcommands: [QEMUHook.self, VMwareHook.self]
    )
}

struct QEMUHook: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "qemu", abstract: "QEMU guest agent fsfreeze-hook: freeze | thaw.")

    @Argument(help: "freeze or thaw") var action: String
    @OptionGroup var plan: PlanOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["freeze", "thaw"].contains(action) else { throw ValidationError("the QEMU hook takes freeze or thaw, not \(action)") }
    }

    func run() throws {
        try requireRoot("hook qemu")
        throw ExitCode(runHook(agent: "qemu", action: action, plan: plan, output: output))
    }
}

struct VMwareHook: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vmware", abstract: "VMware Tools backupScripts.d: freeze | thaw | freezeFail.")

    @Argument(help: "freeze, thaw or freezeFail") var action: String
    @OptionGroup var plan: PlanOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["freeze", "thaw", "freezefail"].contains(action.lowercased()) else {
            throw ValidationError("the VMware hook takes freeze, thaw or freezeFail, not \(action)")
        }
    }

    func run() throws {
        try requireRoot("hook vmware")
        throw ExitCode(runHook(agent: "vmware", action: action.lowercased(), plan: plan, output: output))
    }
}

private func runHook(agent: String, action: String, plan: PlanOptions, output: OutputOptions) -> Int32 {
    switch action {
    case "freeze":
        let envelope = SessionClient.start(executable: currentExecutable(), arguments: ["--mode", agent] + plan.arguments,
                                           environment: sessionEnvironment(verbose: output.verbose))
        return SessionOutput.print(envelope, json: output.json, agentFreezes: true)
    case "thaw":
        return SessionOutput.thaw(operationID: nil, snapshotTaken: true, json: output.json)
    default:  // freezefail: the agent's snapshot failed; resume and tell the post-script
        return SessionOutput.thaw(operationID: nil, snapshotTaken: false, json: output.json)
    }
}
