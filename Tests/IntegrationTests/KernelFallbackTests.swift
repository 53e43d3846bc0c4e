import CPluginHostShim
import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// The fallbacks for kernels without pidfd_open (5.3), STATX_MNT_ID (5.8) or close_range (5.9).
/// scripts/test.sh runs the integration suites a second time with every fallback forced
/// (PLUGINHOST_TEST_FORCE_FALLBACKS=1); these tests check that the switch reaches the real
/// binary and that each fallback gives what the feature gives.
@Suite(
    "Kernel features and their fallbacks", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct KernelFallbackTests {
    /// The mount id from /proc/self/fdinfo is the one statx gives and the one mountinfo lists.
    @Test func mountIDFromFdinfoEqualsStatxAndMountinfo() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let fd = open(fs.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        var fromFdinfo: UInt64 = 0
        #expect(ph_mount_id_from_fdinfo(fd, &fromFdinfo) == 0)
        let listed = MountTable.parse(host.scratch.read("/proc/self/mountinfo")).first {
            $0.mountPoint == fs.mountPoint
        }
        #expect(listed.map { UInt64($0.id) } == fromFdinfo)
        if ph_kernel_features() & PH_FEATURE_STATX_MNT_ID != 0 && !KernelFeature.fallbacksForced {
            var fromStatx: UInt64 = 0
            #expect(ph_mount_id(fd, &fromStatx) == 0)
            #expect(fromStatx == fromFdinfo)
        }
        var none: UInt64 = 0
        #expect(ph_mount_id_from_fdinfo(-1, &none) == -1)
    }

    /// `check` says which features it uses; forced, none of them.
    @Test(arguments: [false, true])
    func checkPrintsTheKernelFeaturesInUse(forced: Bool) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        var environment = host.environment
        environment["PLUGINHOST_TEST_FORCE_FALLBACKS"] = forced ? "1" : nil
        let check = capture(
            pluginhostBinary,
            ["check", "--mount", fs.mountPoint, "--plugins-dir", host.scratch.mkdir("plugins.d"), "--json"],
            environment: environment)
        let document = try JSONParser.parse(check.stdout)
        guard case .array(let features)? = document["kernel"]?["features"] else {
            Issue.record("no kernel features in \(check.stdout) \(check.stderr)")
            return
        }
        #expect(
            features.compactMap { if case .string(let name)? = $0["name"] { name } else { nil } }
                == ["pidfd_open", "statx STATX_MNT_ID", "close_range", "clone3 CLONE_INTO_CGROUP"])
        #expect(document["kernel"]?["fallbacksForced"] == .bool(forced))
        for feature in features {
            let available = feature["available"] == .bool(true)
            #expect(feature["used"] == .bool(available && !forced), "\(feature.serialized())")
        }
        let text = capture(
            pluginhostBinary, ["check", "--mount", fs.mountPoint, "--plugins-dir", host.scratch.path + "/plugins.d"],
            environment: environment)
        #expect(text.stdout.contains("Kernel \(KernelFeature.kernelRelease)"))
        #expect(text.stdout.contains("close_range") && text.stdout.contains("(Linux 5.9)"))
        if forced { #expect(text.stdout.contains("fallback: closing the descriptors listed in /proc/self/fd")) }
    }

    /// A whole operation with every fallback forced: the scripts, the guard and the snapshot
    /// command are waited for without pidfds, the guard checks mount ids through fdinfo, and the
    /// snapshot command inherits no descriptor of the host (closed by walking /proc/self/fd).
    @Test func wholeOperationWithEveryFallbackForced() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre.sh", "#!/bin/sh\nexit 0\n")
        let post = host.script("post.sh", "#!/bin/sh\nexit 0\n")
        let config = host.config(pre: pre, post: post)
        let snapshot = host.script("snap.sh", "#!/bin/sh\nls /proc/self/fd | sort -n | tr '\\n' ' '\n")
        var environment = host.environment
        environment["PLUGINHOST_TEST_FORCE_FALLBACKS"] = "1"
        let result = capture(
            pluginhostBinary, ["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", snapshot],
            environment: environment, timeoutSeconds: 120)
        #expect(result.succeeded, "\(result.stdout) \(result.stderr)")
        let report = try #require(ReportStore.decode(Array(result.stdout.utf8)))
        #expect(report.result == .succeeded && report.consistency == .application)
        #expect(report.freeze?.mounts.map(\.freeze) == [.frozen] && report.freeze?.mounts.map(\.thaw) == [.thawed])
        // 0, 1, 2 and the descriptor ls itself has open on the directory; nothing of the host's.
        let descriptors = report.snapshot?.stdoutTail.split(separator: " ").compactMap { Int($0) } ?? []
        #expect(descriptors.count <= 4 && descriptors.prefix(3) == [0, 1, 2], "\(report.snapshot?.stdoutTail ?? "")")
    }
}
