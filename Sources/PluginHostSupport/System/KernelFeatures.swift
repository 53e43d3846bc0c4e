import CPluginHostShim
import Glibc

/// The newer kernel interfaces pluginhost uses, whether this kernel has them, and the fallback
/// taken where it does not (DESIGN: Linux 4.18, RHEL 8, is the floor).
public struct KernelFeature: Sendable, Codable, Equatable {
    /// The system call or flag.
    public var name: String
    /// The first Linux release that has it.
    public var since: String
    /// Whether this kernel has it.
    public var available: Bool
    /// Whether pluginhost uses it here (false: the fallback is used).
    public var used: Bool
    /// What is done instead when it is not used.
    public var fallback: String

    /// Every feature, probed on the running kernel (by calling it, not from the version).
    public static func probe() -> [KernelFeature] {
        let present = ph_kernel_features()
        let forced = fallbacksForced
        func feature(_ name: String, _ since: String, _ bit: Int32, _ fallback: String) -> KernelFeature {
            let available = present & bit != 0
            return KernelFeature(
                name: name, since: since, available: available, used: available && !forced, fallback: fallback)
        }
        return [
            feature(
                "pidfd_open", "5.3", PH_FEATURE_PIDFD,
                "SIGCHLD self-pipe and waitid(WNOWAIT) on its own children; the guard sees the host exit as its socket closing"
            ),
            feature("statx STATX_MNT_ID", "5.8", PH_FEATURE_STATX_MNT_ID, "mnt_id from /proc/self/fdinfo"),
            feature("close_range", "5.9", PH_FEATURE_CLOSE_RANGE, "closing the descriptors listed in /proc/self/fd"),
            feature(
                "clone3 CLONE_INTO_CGROUP", "5.7", PH_FEATURE_CLONE_INTO_CGROUP,
                "the child moves itself into its cgroup before exec, which can wait 10-15 ms for the kernel"),
        ]
    }

    /// PLUGINHOST_TEST_FORCE_FALLBACKS=1 (the tests set it): every fallback is used.
    public static var fallbacksForced: Bool { ph_fallbacks_forced() != 0 }

    /// `uname -r`.
    public static var kernelRelease: String {
        var name = utsname()
        guard uname(&name) == 0 else { return "unknown" }
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

extension KernelFeature {
    /// The switch, passed on to the processes pluginhost starts of itself (the freeze guard,
    /// a spawned plugin worker, the two-phase session), so that the whole operation runs the
    /// fallbacks the test forced. Empty otherwise.
    public static var inheritedEnvironment: [String: String] {
        fallbacksForced ? ["PLUGINHOST_TEST_FORCE_FALLBACKS": "1"] : [:]
    }
}
