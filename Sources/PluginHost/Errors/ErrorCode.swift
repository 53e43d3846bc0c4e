import PluginHostSupport

/// Every error the host reports. The raw values of the first ten are the codes Azure's
/// VMSnapshotLinux Pluginhost documents, verbatim; the rest are our extensions for what Azure's
/// table has no code for. Codes are only ever added, never renamed.
public enum ErrorCode: String, CaseIterable, Sendable, Codable {
    // Azure's documented codes.
    case preScriptExecutionFailed = "Pre-ScriptExecutionFailed"
    case postScriptExecutionFailed = "Post-ScriptExecutionFailed"
    case preScriptNotFound = "Pre-ScriptNotFound"
    case postScriptNotFound = "Post-ScriptNotFound"
    case incorrectPluginhostFile = "IncorrectPluginhostFile"
    case incorrectJSONConfigFile = "IncorrectJSONConfigFile"
    case insufficientPermissionForPreScript = "InsufficientPermissionforPre-Script"
    case insufficientPermissionForPostScript = "InsufficientPermissionforPost-Script"
    case preScriptTimeout = "Pre-ScriptTimeout"
    case postScriptTimeout = "Post-ScriptTimeout"

    // Extensions.
    case freezeFailed = "FreezeFailed"
    case freezeDeadlineExpired = "FreezeDeadlineExpired"
    case thawFailed = "ThawFailed"
    case snapshotCommandFailed = "SnapshotCommandFailed"
    case operationBusy = "OperationBusy"
    case operationInterrupted = "OperationInterrupted"
    case pluginCheckFailed = "PluginCheckFailed"
    case pluginQuiesceFailed = "PluginQuiesceFailed"
    case pluginQuiesceTimeout = "PluginQuiesceTimeout"
    case pluginResumeFailed = "PluginResumeFailed"
    case pluginResumeTimeout = "PluginResumeTimeout"
    case pluginConsistencyLost = "PluginConsistencyLost"
    case pluginApplicationUnreachable = "PluginApplicationUnreachable"
    case pluginCrashed = "PluginCrashed"
    case noActiveOperation = "NoActiveOperation"
    case hookHoldLimitExpired = "HookHoldLimitExpired"
    case groupMemberFailed = "GroupMemberFailed"
    case groupCoordinatorUnreachable = "GroupCoordinatorUnreachable"

    /// True for the ten codes of Azure's troubleshooting table.
    public var isAzureDocumented: Bool {
        switch self {
        case .preScriptExecutionFailed, .postScriptExecutionFailed, .preScriptNotFound,
            .postScriptNotFound, .incorrectPluginhostFile, .incorrectJSONConfigFile,
            .insufficientPermissionForPreScript, .insufficientPermissionForPostScript,
            .preScriptTimeout, .postScriptTimeout:
            return true
        default:
            return false
        }
    }

    /// The sentence Azure's troubleshooting table gives for the code ("Error message" column of
    /// "Application-consistent backup of Azure Linux VMs", verbatim but for plain quotes): every
    /// report message with one of these codes begins with it, so that an admin searching Azure's
    /// documentation finds it. nil for our extensions.
    public var azureMessage: String? {
        switch self {
        case .preScriptExecutionFailed:
            "The prescript returned an error, so backup might not be application-consistent."
        case .postScriptExecutionFailed: "The post-script returned an error that might impact application state."
        case .preScriptNotFound:
            "The prescript wasn't found at the location that's specified in the VMSnapshotScriptPluginConfig.json config file."
        case .postScriptNotFound:
            "The post-script wasn't found at the location that's specified in the VMSnapshotScriptPluginConfig.json config file."
        case .incorrectPluginhostFile:
            """
            The Pluginhost file, which comes with the VmSnapshotLinux extension, is corrupted, so prescript and \
            post-script can't run and the backup won't be application-consistent.
            """
        case .incorrectJSONConfigFile:
            """
            The VMSnapshotScriptPluginConfig.json file is incorrect, so prescript and post-script can't run and the \
            backup won't be application-consistent.
            """
        case .insufficientPermissionForPreScript, .insufficientPermissionForPostScript:
            """
            For running scripts, \"root\" user should be the owner of the file and the file should have \"700\" \
            permissions (that is, only \"owner\" should have \"read\", \"write\", and \"execute\" permissions).
            """
        case .preScriptTimeout: "The execution of the application-consistent backup pre-script timed-out."
        case .postScriptTimeout: "The execution of the application-consistent backup post-scripts timed out."
        default: nil
        }
    }

    /// What happened, in one line.
    public var meaning: String {
        switch self {
        case .preScriptExecutionFailed: "The pre-script exited with a non-zero status, 2 included (after every retry)."
        case .postScriptExecutionFailed:
            "The post-script exited with a non-zero status, 2 included (after every retry)."
        case .preScriptNotFound: "The pre-script named in the config file does not exist."
        case .postScriptNotFound: "The post-script named in the config file does not exist."
        case .incorrectPluginhostFile:
            "A plugin or one of the host's own files failed its integrity or permission check."
        case .incorrectJSONConfigFile:
            "The config file is not valid JSON, breaks a field rule, or has unsafe ownership or mode."
        case .insufficientPermissionForPreScript:
            "The pre-script is not a root-owned regular file without group or other permissions, in directories only root can change."
        case .insufficientPermissionForPostScript:
            "The post-script is not a root-owned regular file without group or other permissions, in directories only root can change."
        case .preScriptTimeout: "The pre-script did not finish within timeoutInSeconds (after every retry)."
        case .postScriptTimeout: "The post-script did not finish within timeoutInSeconds (after every retry)."
        case .freezeFailed: "A filesystem could not be frozen; everything frozen so far was thawed at once."
        case .freezeDeadlineExpired: "The freeze guard thawed at its deadline before the snapshot finished."
        case .thawFailed: "A frozen filesystem could not be thawed."
        case .snapshotCommandFailed: "The snapshot command failed, timed out or could not be started."
        case .operationBusy: "Another operation is running on this machine."
        case .operationInterrupted: "The operation was stopped by a signal and rolled back."
        case .pluginCheckFailed: "A plugin could not be set up or its check failed (config, privileges, version)."
        case .pluginQuiesceFailed: "A plugin could not quiesce its application."
        case .pluginQuiesceTimeout:
            "A plugin did not quiesce within its timeoutSeconds; its worker was killed, and its sessions and locks with it."
        case .pluginResumeFailed: "A plugin could not resume its application."
        case .pluginResumeTimeout:
            "A plugin did not resume within its timeoutSeconds; its worker was killed, and its sessions and locks with it."
        case .pluginConsistencyLost:
            """
            A plugin's quiesce did not hold until resume (its session was lost): the snapshot is not \
            application-consistent for that application.
            """
        case .pluginApplicationUnreachable:
            "A plugin could not reach its application (server down, wrong socket or port)."
        case .pluginCrashed: "A plugin's worker crashed or broke the protocol; it was killed."
        case .noActiveOperation: "`thaw` found no operation waiting for it (none was frozen, or it already ended)."
        case .hookHoldLimitExpired:
            "A hook's agent sent no thaw within the hook hold limit: the plugins were resumed and the post-script ran without it."
        case .groupMemberFailed:
            """
            Another member of the consistency group failed, vanished (its etcd lease expired) or did not reach a \
            barrier in time; this member rolled back.
            """
        case .groupCoordinatorUnreachable:
            "etcd could not be reached (or refused a request) in time; this member rolled back on its own."
        }
    }

    /// What the admin should do about it.
    public var action: String {
        switch self {
        case .preScriptExecutionFailed:
            "Run the pre-script by hand as root and fix its failure; its output tail is in the report."
        case .postScriptExecutionFailed:
            "Run the post-script by hand as root and fix its failure; its output tail is in the report."
        case .preScriptNotFound: "Put the pre-script at preScriptLocation (an absolute path) or correct the path."
        case .postScriptNotFound: "Put the post-script at postScriptLocation (an absolute path) or correct the path."
        case .incorrectPluginhostFile:
            "Reinstall the named file or fix its owner (root), mode (no group/other write) and checksum; `pluginhost list` shows why."
        case .incorrectJSONConfigFile:
            "Fix the field named in the message; the file must be owned by root with mode 600 or 400."
        case .insufficientPermissionForPreScript:
            """
            chown root and chmod 700 (or 600: it then runs through /bin/sh) the pre-script; no directory above it may \
            be writable by others.
            """
        case .insufficientPermissionForPostScript:
            """
            chown root and chmod 700 (or 600: it then runs through /bin/sh) the post-script; no directory above it may \
            be writable by others.
            """
        case .preScriptTimeout: "Make the pre-script faster or raise timeoutInSeconds (at most 1800)."
        case .postScriptTimeout: "Make the post-script faster or raise timeoutInSeconds (at most 1800)."
        case .freezeFailed:
            "Check the filesystem named in the message (is it busy, read-only or unsupported?) or exclude it with --skip."
        case .freezeDeadlineExpired: "Make the snapshot faster or raise the freeze deadline (--max-frozen)."
        case .thawFailed:
            "Run `pluginhost recover` at once; if it fails too, run `fsfreeze -u` on the named mount point."
        case .snapshotCommandFailed: "Run the snapshot command by hand; its output tail is in the report."
        case .operationBusy: "Wait for the running operation to end (`pluginhost status` shows it) and try again."
        case .operationInterrupted: "Nothing to undo; start the operation again when ready."
        case .pluginCheckFailed:
            "Run `pluginhost check` and fix what the plugin reports (its config in the manifest, the database privileges)."
        case .pluginQuiesceFailed:
            "Read the plugin's message in the report; `pluginhost check` reaches the application without quiescing it."
        case .pluginQuiesceTimeout:
            "Look for what blocked the application (long statements, another backup) or raise timeoutSeconds in the manifest."
        case .pluginResumeFailed:
            "Check the application at once: it may still be quiesced; the plugin's message says what failed."
        case .pluginResumeTimeout:
            "Check the application at once; raise timeoutSeconds in the manifest if resume is slow by nature."
        case .pluginConsistencyLost:
            "Take the snapshot again; find out why the session ended (server restart, a KILL, wait_timeout)."
        case .pluginApplicationUnreachable:
            "Start the application or fix the connection settings in the plugin's manifest."
        case .pluginCrashed: "Report it to the plugin's authors with the report; `pluginhost list` shows its version."
        case .noActiveOperation:
            "Give `thaw --operation ID` for an operation's final report; `pluginhost status` shows the last one."
        case .hookHoldLimitExpired:
            """
            Check the agent's freeze (qemu-ga calls no thaw hook when it froze nothing, e.g. a path that is not a \
            mount point) or raise hookHoldLimitSeconds.
            """
        case .groupMemberFailed:
            "Read the named member's report (`pluginhost status` on that machine), fix it, and start the group again."
        case .groupCoordinatorUnreachable:
            "Check the etcd endpoints, certificates and network from this machine (`pluginhost check` with the group options reaches etcd)."
        }
    }
}
