import Glibc
import PluginHostSupport
import PluginHostWire
import Testing

@testable import PluginHost

/// Storage dependencies decide the waves (a filesystem on a loop file freezes before
/// the filesystem holding the file), read from a sysfs tree; and the report's outcomes come from
/// the journal's typed states.
@Suite("Freeze waves and records")
struct FreezeWavesTests {
    /// A sysfs tree in a scratch directory, and where each file "lives".
    final class FakeSystem {
        let root: String
        var files: [String: String] = [:]
        var nodes: [String: String] = [:]

        init() {
            var template = Array("/tmp/pluginhost-sysfs-XXXXXX".utf8CString)
            root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        }

        deinit { _ = system("rm -rf '\(root)'") }

        func write(_ path: String, _ text: String) {
            _ = system("mkdir -p '\(root)/\(FileTrust.parent(of: path))'")
            let fd = open("\(root)/\(path)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            close(fd)
        }

        func link(_ path: String, to target: String) {
            _ = system("mkdir -p '\(root)/\(FileTrust.parent(of: path))' && ln -s '\(target)' '\(root)/\(path)'")
        }

        /// A loop device `device` whose backing file is `file`, on the filesystem `fileSystem`.
        func loop(_ device: String, file: String, on fileSystem: String) {
            write("dev/block/\(device)/loop/backing_file", file + "\n")
            files[file] = fileSystem
        }

        var stack: StorageStack {
            let files = self.files
            let nodes = self.nodes
            return StorageStack(sysfs: root, filesystemDevice: { files[$0] }, blockDeviceNode: { nodes[$0] })
        }
    }

    static func target(_ mountPoint: String, _ device: String, source: String = "/dev/x") -> FreezeTarget {
        FreezeTarget(mountPoint: mountPoint, fsType: "ext4", source: source, device: device, mountID: 1)
    }

    /// The deadlock: `upper`'s image lives on `lower`, mounted deeper.
    @Test func aLoopFilesystemFreezesBeforeTheOneHoldingItsFile() throws {
        let system = FakeSystem()
        system.loop("7:0", file: "/var/lower.img", on: "254:0")
        system.loop("7:1", file: "/srv/deep/lower/upper.img", on: "7:0")
        let table = MountTable.parse(
            """
            22 1 254:0 / / rw - ext4 /dev/vda rw
            30 22 7:0 / /srv/deep/lower rw - ext4 /dev/loop0 rw
            31 22 7:1 / /srv/upper rw - ext4 /dev/loop1 rw
            """)
        let selection = try FreezePlan.select(
            from: table, only: ["/srv/deep/lower", "/srv/upper"], storage: system.stack)
        #expect(selection.targets.map(\.mountPoint) == ["/srv/upper", "/srv/deep/lower"])
        #expect(selection.targets.map(\.wave) == [0, 1])
        // Without the dependency, the deeper mount point would have come first.
        let plain = try FreezePlan.select(
            from: table, only: ["/srv/deep/lower", "/srv/upper"], storage: FakeSystem().stack)
        #expect(
            plain.targets.map(\.mountPoint) == ["/srv/deep/lower", "/srv/upper"] && plain.targets.map(\.wave) == [0, 0])
    }

    @Test func independentFilesystemsShareAWave() {
        let system = FakeSystem()
        let targets = (0..<16).map { Self.target("/mnt/\($0)", "7:\($0)") }
        for index in 0..<16 { system.loop("7:\(index)", file: "/img/\(index)", on: "254:0") }
        #expect(system.stack.waves(for: targets) == [Int](repeating: 0, count: 16))
    }

    /// a ← b ← c: c's file on b, b's file on a. With b not frozen, c still goes before a.
    @Test func dependenciesAreFollowedThroughFilesystemsNotFrozen() {
        let system = FakeSystem()
        system.loop("7:2", file: "/b/c.img", on: "7:1")
        system.loop("7:1", file: "/a/b.img", on: "7:0")
        let a = Self.target("/a", "7:0")
        let b = Self.target("/b", "7:1")
        let c = Self.target("/c", "7:2")
        #expect(system.stack.waves(for: [a, b, c]) == [2, 1, 0])
        #expect(system.stack.waves(for: [a, c]) == [1, 0])
        #expect(system.stack.backingFilesystems(of: c) == ["7:1", "7:0"])
    }

    /// device-mapper (LVM, dm-crypt) and md over loop devices: through `slaves`.
    @Test func stackedDevicesAreFollowedThroughTheirSlaves() {
        let system = FakeSystem()
        system.write("dev/block/253:0/slaves/loop3/dev", "7:3\n")
        system.write("dev/block/253:0/slaves/loop4/dev", "7:4\n")
        system.loop("7:3", file: "/a/pv1.img", on: "7:0")
        system.loop("7:4", file: "/b/pv2.img (deleted)", on: "7:1")
        system.files["/b/pv2.img"] = "7:1"
        let dm = Self.target("/dm", "253:0")
        #expect(system.stack.backingFilesystems(of: dm) == ["7:0", "7:1"])
        #expect(system.stack.waves(for: [Self.target("/a", "7:0"), dm, Self.target("/b", "7:1")]) == [1, 0, 1])
    }

    /// A partition of a loop device: its loop file is its disk's.
    @Test func aPartitionIsFollowedToItsDisk() {
        let system = FakeSystem()
        system.write("devices/virtual/block/loop5/loop/backing_file", "/a/disk.img\n")
        system.write("devices/virtual/block/loop5/loop5p1/partition", "1\n")
        system.link("dev/block/259:1", to: "../../devices/virtual/block/loop5/loop5p1")
        system.files["/a/disk.img"] = "7:0"
        #expect(system.stack.backingFilesystems(of: Self.target("/p", "259:1")) == ["7:0"])
    }

    /// btrfs shows an anonymous device in mountinfo: its source names the block device.
    @Test func btrfsIsFollowedThroughItsSource() {
        let system = FakeSystem()
        system.loop("7:6", file: "/a/btrfs.img", on: "7:0")
        system.nodes["/dev/loop6"] = "7:6"
        let btrfs = FreezeTarget(mountPoint: "/btr", fsType: "btrfs", source: "/dev/loop6", device: "0:45", mountID: 2)
        #expect(system.stack.waves(for: [Self.target("/a", "7:0"), btrfs]) == [1, 0])
    }

    /// The real machine: whatever it has, the root filesystem's storage is not on itself.
    @Test func theLiveSystemReadsWithoutTrouble() throws {
        let table = try MountTable.current()
        guard let root = table.last(where: { $0.mountPoint == "/" }) else { return }
        let target = FreezeTarget(
            mountPoint: "/", fsType: root.fsType, source: root.source, device: root.device, mountID: root.id)
        #expect(!StorageStack.live.backingFilesystems(of: target).contains(root.device))
    }

    // MARK: - Records from the journal

    static func journal(_ states: [MountFreezeState]) -> FreezeJournalRecord {
        var record = FreezeJournalRecord(
            operationID: "op", hostPID: 1, deadlineMilliseconds: 3000, createdAtNanoseconds: 1,
            mounts: states.enumerated().map { index, state in
                var mount = FreezeJournalRecord.Mount(
                    mountPoint: "/m\(index)", fsType: "ext4", source: "/dev/x", device: "7:\(index)",
                    mountID: 1, wave: 0, state: state,
                    errno: state == .freezeFailed ? EIO : state == .thawFailed ? EPERM : 0)
                if state != .pending {
                    mount.freezeStartNanoseconds = 1_000_000_000 + UInt64(index) * 1_000_000
                    if state != .freezing { mount.freezeEndNanoseconds = mount.freezeStartNanoseconds + 2_000_000 }
                }
                if [.thawing, .thawed, .wasNotFrozen, .thawFailed].contains(state) {
                    mount.thawStartNanoseconds = 2_000_000_000
                    if state != .thawing { mount.thawEndNanoseconds = 2_001_000_000 }
                }
                return mount
            })
        record.thawCause = .command
        return record
    }

    /// Every journal state as the report shows it (the JSON strings stay those of before).
    @Test func everyStateHasItsReportOutcome() throws {
        let expected: [MountFreezeState: (String, String)] = [
            .pending: ("not-attempted", "not-needed"), .freezing: ("stuck", "pending"), .frozen: ("frozen", "pending"),
            .alreadyFrozen: ("already-frozen", "not-ours"), .freezeFailed: ("failed", "not-needed"),
            .thawing: ("frozen", "pending"),
            .thawed: ("frozen", "thawed"), .wasNotFrozen: ("frozen", "was-not-frozen"),
            .thawFailed: ("frozen", "failed"),
        ]
        for state in MountFreezeState.allCases {
            let record = FreezeRecord(Self.journal([state]), origin: Monotonic.Instant(nanoseconds: 0))
            let mount = try #require(record.mounts.first)
            #expect((mount.freeze.rawValue, mount.thaw.rawValue) == expected[state]!, "\(state)")
            #expect(record.mayStillBeFrozen == state.mayBeFrozenByUs, "\(state)")
        }
        let failed = FreezeRecord(Self.journal([.freezeFailed]), origin: Monotonic.Instant(nanoseconds: 0))
        #expect(failed.mounts[0].error?.contains("FIFREEZE") == true && failed.freezeError()?.code == .freezeFailed)
        #expect(
            FreezeRecord(Self.journal([.thawFailed]), origin: Monotonic.Instant(nanoseconds: 0)).thawError()?.code
                == .thawFailed)
        #expect(
            FreezeRecord(Self.journal([.freezing]), origin: Monotonic.Instant(nanoseconds: 0)).thawError()?.message
                .contains("has not returned") == true
        )
    }

    /// The window is first FIFREEZE to last FITHAW, as the ioctls were timed; none while frozen.
    @Test func theWindowIsTheIoctlsWindow() {
        let thawed = FreezeRecord(
            Self.journal([.thawed, .thawed, .alreadyFrozen]), origin: Monotonic.Instant(nanoseconds: 500_000_000))
        #expect(thawed.windowMs == 1001)  // 1.000 s → 2.001 s
        #expect(thawed.windowStartMs == 500)
        #expect(thawed.firstThaw == Monotonic.Instant(nanoseconds: 2_000_000_000))
        #expect(
            FreezeRecord(Self.journal([.thawed, .frozen]), origin: Monotonic.Instant(nanoseconds: 0)).windowMs == nil)
        var report = OperationReport(operationID: "op", command: "run", startedAt: "now")
        report.freeze = thawed
        let text = String(decoding: ReportStore.encode(report), as: UTF8.self)
        #expect(
            text.contains("\"freeze\" : \"frozen\"") && text.contains("\"thaw\" : \"not-ours\"")
                && text.contains("\"wave\" : 0"))
        #expect(ReportStore.decode(ReportStore.encode(report))?.freeze?.mounts == thawed.mounts)
    }
}
