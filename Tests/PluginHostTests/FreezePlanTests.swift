import PluginHostSupport
import Testing

@testable import PluginHost

/// README, "What an operation does": which mounts are frozen, one per superblock, children first and `/` last.
@Suite("FreezePlan")
struct FreezePlanTests {
    /// A realistic /proc/self/mountinfo of a VM with data disks, a container runtime and the
    /// usual pseudo filesystems.
    static let sample = #"""
        22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,discard,errors=remount-ro
        23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
        24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
        25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4019120k,nr_inodes=1004780,mode=755
        26 25 0:23 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=000
        27 22 0:24 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=812784k,mode=755
        28 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
        30 22 8:17 / /data rw,relatime shared:20 - xfs /dev/sdb1 rw,attr2,inode64,logbufs=8,logbsize=32k,noquota
        31 30 8:33 / /data/db rw,noatime shared:21 master:2 - ext4 /dev/sdc1 rw
        32 22 8:17 /exports /srv/exports rw,relatime shared:20 - xfs /dev/sdb1 rw,attr2,inode64
        33 22 8:49 / /mnt/my\040disk rw,relatime - ext4 /dev/sdd1 rw
        34 22 8:65 / /mnt/backup ro,relatime shared:30 - ext4 /dev/sde1 ro
        35 22 0:50 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
        36 22 0:51 / /mnt/nfs rw,relatime shared:40 - nfs4 server:/export rw,vers=4.2,addr=10.0.0.5
        37 22 0:52 / /mnt/sshfs rw,nosuid,nodev,relatime - fuse.sshfs user@host:/ rw,user_id=0,group_id=0
        38 22 8:81 / /scratch rw,relatime - ext4 /dev/sdf1 rw
        39 22 0:60 / /scratch rw,relatime - tmpfs tmpfs rw,size=1024k
        40 22 8:97 / /boot rw,relatime shared:50 - ext2 /dev/sdg1 rw
        41 40 8:98 / /boot/efi rw,relatime shared:51 - vfat /dev/sdg2 rw,fmask=0077,dmask=0077
        42 22 8:49 / /mnt/ro\040view ro,relatime - ext4 /dev/sdd1 rw
        43 22 8:113 / /srv rw,relatime - ext4 /dev/sdh1 rw
        44 22 8:129 / /srv rw,relatime - xfs /dev/sdi1 rw
        45 22 0:70 / /snap/core/123 ro,nodev,relatime shared:60 - squashfs /dev/loop0 ro
        46 22 0:71 / /mnt/smb rw,relatime - cifs //server/share rw,vers=3.0
        """#

    static var entries: [MountEntry] { MountTable.parse(sample) }

    static func entry(_ mountPoint: String, in entries: [MountEntry] = entries) -> MountEntry? {
        entries.last { $0.mountPoint == mountPoint }
    }

    static func mountPoints(_ selection: FreezePlan.Selection) -> [String] {
        selection.targets.map(\.mountPoint)
    }

    static func reason(for mountPoint: String, in selection: FreezePlan.Selection) -> String? {
        selection.skipped.first { $0.mountPoint == mountPoint }?.reason
    }

    /// A mountinfo line for synthetic tables.
    static func line(
        _ id: Int, _ parent: Int, _ device: String, root: String = "/", _ mountPoint: String,
        _ fsType: String = "ext4", options: String = "rw,relatime"
    ) -> String {
        "\(id) \(parent) \(device) \(root) \(mountPoint) \(options) - \(fsType) /dev/x\(id) rw"
    }

    // MARK: - Parsing

    @Test func parsesEveryLine() {
        #expect(Self.entries.count == 24)
        #expect(Self.entries.map(\.id) == Array(22...28) + Array(30...46))
    }

    @Test func parsesTheFieldsOfALine() throws {
        let root = try #require(Self.entry("/"))
        #expect(
            root
                == MountEntry(
                    id: 22, parentID: 1, device: "8:1", root: "/", mountPoint: "/",
                    mountOptions: ["rw", "relatime"], fsType: "ext4", source: "/dev/sda1",
                    superOptions: ["rw", "discard", "errors=remount-ro"]))
        #expect(!root.isReadOnly)
    }

    @Test func optionalFieldsAreSkipped() throws {
        // "shared:21 master:2" sits between the mount options and the "-" separator.
        let db = try #require(Self.entry("/data/db"))
        #expect(db.id == 31)
        #expect(db.parentID == 30)
        #expect(db.device == "8:33")
        #expect(db.mountOptions == ["rw", "noatime"])
        #expect(db.fsType == "ext4")
        #expect(db.source == "/dev/sdc1")
        #expect(db.superOptions == ["rw"])

        let many = MountTable.parse(
            "50 22 8:1 / /x rw shared:1 master:2 propagate_from:3 unbindable - ext4 /dev/sda1 rw")
        #expect(many.count == 1)
        #expect(many.first?.fsType == "ext4")
        #expect(many.first?.source == "/dev/sda1")

        let none = MountTable.parse("50 22 8:1 / /x rw - ext4 /dev/sda1 rw")
        #expect(none.first?.mountPoint == "/x")
        #expect(none.first?.superOptions == ["rw"])
    }

    @Test func octalEscapesAreDecoded() throws {
        #expect(Self.entry("/mnt/my disk")?.device == "8:49")
        let text = #"""
            60 22 8:1 /sub\040dir /mnt/a\040b\011c\012d\134e rw - ext4 /dev/disk\040one rw
            61 22 8:2 / /mnt/trailing\040 rw - ext4 /dev/sdz rw
            62 22 8:3 / /mnt/\303\251t\303\251 rw - ext4 /dev/sdy rw
            63 22 8:4 / /mnt/not\999octal\04 rw - ext4 /dev/sdx rw
            64 22 8:5 / /mnt/x\134040y rw - ext4 /dev/sdw rw
            """#
        let entries = MountTable.parse(text)
        #expect(entries.count == 5)
        #expect(entries[0].root == "/sub dir")
        #expect(entries[0].mountPoint == "/mnt/a b\tc\nd\\e")
        #expect(entries[0].source == "/dev/disk one")
        #expect(entries[1].mountPoint == "/mnt/trailing ")
        #expect(entries[2].mountPoint == "/mnt/été")
        #expect(entries[3].mountPoint == #"/mnt/not\999octal\04"#)
        // A directory literally named "x\040y": the kernel escapes the backslash itself.
        #expect(entries[4].mountPoint == #"/mnt/x\040y"#)
    }

    @Test func readOnlyComesFromMountOrSuperblockOptions() throws {
        #expect(try #require(Self.entry("/mnt/backup")).isReadOnly)  // both ro
        #expect(try #require(Self.entry("/mnt/ro view")).isReadOnly)  // ro bind of a rw superblock
        let superOnly = MountTable.parse("70 22 8:1 / /x rw,relatime - ext4 /dev/sda1 ro,errors=remount-ro")
        #expect(superOnly.first?.isReadOnly == true)
        let neither = MountTable.parse("70 22 8:1 / /x rw,relatime - ext4 /dev/sda1 rw,errors=remount-ro")
        #expect(neither.first?.isReadOnly == false)
        // "ro" must be a whole option, not a substring of one.
        let lookalike = MountTable.parse("70 22 8:1 / /x rw,rootcontext=x - ext4 /dev/sda1 rw,errors=remount-ro")
        #expect(lookalike.first?.isReadOnly == false)
    }

    @Test func malformedLinesAreSkipped() {
        let text = """

            garbage
            22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
            x 1 8:1 / /a rw - ext4 /dev/sda1 rw
            23 y 8:1 / /b rw - ext4 /dev/sda1 rw
            24 22 8:1 / /c rw ext4 /dev/sda1 rw
            25 22 8:1 / /d rw -
            26 22 8:1 / /e rw - ext4
            27 22 8:1 / - ext4 /dev/sda1 rw

            28 22 8:2 / /f rw,relatime - xfs /dev/sdb1 rw
            """
        let entries = MountTable.parse(text)
        #expect(entries.map(\.mountPoint) == ["/", "/f"])
    }

    @Test func theCurrentTableParses() throws {
        let entries = try MountTable.current()
        #expect(!entries.isEmpty)
        #expect(entries.contains { $0.mountPoint == "/" })
        #expect(entries.allSatisfy { $0.mountPoint.hasPrefix("/") && $0.device.contains(":") })
    }

    // MARK: - Eligibility

    @Test(
        arguments: [
            ("/", nil),
            ("/data", nil),
            ("/data/db", nil),
            ("/srv/exports", nil),
            ("/mnt/my disk", nil),
            ("/boot", nil),
            ("/srv", nil),
            ("/proc", "proc is not a freezable block filesystem"),
            ("/sys", "sysfs is not a freezable block filesystem"),
            ("/dev", "devtmpfs is not a freezable block filesystem"),
            ("/dev/pts", "devpts is not a freezable block filesystem"),
            ("/run", "tmpfs is not a freezable block filesystem"),
            ("/sys/fs/cgroup", "cgroup2 is not a freezable block filesystem"),
            ("/var/lib/docker/overlay2/abc/merged", "overlay is not a freezable block filesystem"),
            ("/mnt/nfs", "nfs4 is not a freezable block filesystem"),
            ("/mnt/smb", "cifs is not a freezable block filesystem"),
            ("/mnt/sshfs", "fuse.sshfs is not a freezable block filesystem"),
            ("/scratch", "tmpfs is not a freezable block filesystem"),
            ("/boot/efi", "vfat is not a freezable block filesystem"),
            ("/snap/core/123", "squashfs is not a freezable block filesystem"),
            ("/mnt/backup", "mounted read-only"),
            ("/mnt/ro view", "mounted read-only"),
        ] as [(String, String?)])
    func eligibility(mountPoint: String, reason: String?) throws {
        let entry = try #require(Self.entry(mountPoint))
        #expect(FreezePlan.ineligibility(of: entry) == reason)
    }

    @Test(arguments: [
        "ext2", "ext3", "ext4", "xfs", "btrfs", "jfs", "reiserfs", "f2fs", "nilfs2", "gfs2", "ocfs2", "bcachefs",
    ])
    func blockFilesystemsAreFreezable(fsType: String) throws {
        let entry = try #require(MountTable.parse(Self.line(80, 22, "8:1", "/x", fsType)).first)
        #expect(FreezePlan.ineligibility(of: entry) == nil)
    }

    @Test(arguments: [
        "tmpfs", "ramfs", "proc", "sysfs", "devtmpfs", "overlay", "nfs", "nfs4", "cifs", "smb3",
        "fuse", "fuse.sshfs", "fuseblk", "9p", "virtiofs", "ceph", "autofs", "squashfs", "iso9660",
        "vfat", "debugfs", "securityfs", "bpf", "cgroup", "cgroup2", "pstore", "mqueue", "hugetlbfs",
        "EXT4", "ext4 ",
    ])
    func otherFilesystemsAreNot(fsType: String) {
        let entry = MountEntry(
            id: 1, parentID: 0, device: "0:1", root: "/", mountPoint: "/x", mountOptions: ["rw"],
            fsType: fsType, source: "none", superOptions: ["rw"])
        #expect(FreezePlan.ineligibility(of: entry) == "\(fsType) is not a freezable block filesystem")
    }

    // MARK: - Selection of everything

    @Test func selectsEveryEligibleFilesystemChildrenFirstRootLast() throws {
        let selection = try FreezePlan.select(from: Self.entries)
        // Depth 2 ("/mnt/my disk" mounted after "/data/db"), depth 1 ("/srv" after "/boot"
        // after "/data"), then "/".
        #expect(Self.mountPoints(selection) == ["/mnt/my disk", "/data/db", "/srv", "/boot", "/data", "/"])
        #expect(selection.targets.last?.mountPoint == "/")
        let data = try #require(selection.targets.first { $0.mountPoint == "/data" })
        #expect(
            data == FreezeTarget(mountPoint: "/data", fsType: "xfs", source: "/dev/sdb1", device: "8:17", mountID: 30))
    }

    @Test func eachSuperblockIsFrozenOnce() throws {
        let selection = try FreezePlan.select(from: Self.entries)
        let devices = selection.targets.map(\.device)
        #expect(Set(devices).count == devices.count)
        // The bind mount of /data's filesystem is left out, naming the mount that is frozen.
        #expect(Self.reason(for: "/srv/exports", in: selection) == "same filesystem as /data")
        #expect(!Self.mountPoints(selection).contains("/srv/exports"))
    }

    @Test func stackedMountsUseTheVisibleOne() throws {
        let selection = try FreezePlan.select(from: Self.entries)
        // /scratch: ext4 hidden under a tmpfs. Neither is frozen; only the tmpfs is reported.
        #expect(!selection.targets.contains { $0.device == "8:81" })
        #expect(
            selection.skipped.filter { $0.mountPoint == "/scratch" }.map(\.reason)
                == ["tmpfs is not a freezable block filesystem"])
        // /srv: ext4 hidden under xfs. The xfs (mount 44) is frozen, the hidden ext4 is not.
        let srv = selection.targets.filter { $0.mountPoint == "/srv" }
        #expect(srv.count == 1)
        #expect(srv.first?.mountID == 44)
        #expect(srv.first?.fsType == "xfs")
        #expect(!selection.targets.contains { $0.device == "8:113" })
    }

    @Test func ineligibleMountsAreReportedWithTheirReason() throws {
        let selection = try FreezePlan.select(from: Self.entries)
        #expect(Self.reason(for: "/proc", in: selection) == "proc is not a freezable block filesystem")
        #expect(Self.reason(for: "/run", in: selection) == "tmpfs is not a freezable block filesystem")
        #expect(Self.reason(for: "/mnt/nfs", in: selection) == "nfs4 is not a freezable block filesystem")
        #expect(Self.reason(for: "/mnt/sshfs", in: selection) == "fuse.sshfs is not a freezable block filesystem")
        #expect(
            Self.reason(for: "/var/lib/docker/overlay2/abc/merged", in: selection)
                == "overlay is not a freezable block filesystem")
        #expect(Self.reason(for: "/mnt/backup", in: selection) == "mounted read-only")
        #expect(Self.reason(for: "/mnt/ro view", in: selection) == "mounted read-only")
        #expect(Self.reason(for: "/boot/efi", in: selection) == "vfat is not a freezable block filesystem")
        // Every visible mount is either a target or skipped, exactly once.
        let visible = Set(Self.entries.map(\.mountPoint))
        let accounted = Self.mountPoints(selection) + selection.skipped.map(\.mountPoint)
        #expect(accounted.count == visible.count)
        #expect(Set(accounted) == visible)
    }

    @Test func emptyTableSelectsNothing() throws {
        let selection = try FreezePlan.select(from: [])
        #expect(selection.targets.isEmpty)
        #expect(selection.skipped.isEmpty)
    }

    // MARK: - Deduplication

    @Test func wholeFilesystemMountIsPreferredOverABindOfASubtree() throws {
        // The bind mount of a subtree comes first and has the shorter path; the mount of the
        // whole filesystem (root "/") is still the one frozen.
        let text = [
            Self.line(1, 0, "8:1", "/"),
            Self.line(2, 1, "8:16", root: "/exports/a", "/x"),
            Self.line(3, 1, "8:16", "/data/long/path"),
        ].joined(separator: "\n")
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/data/long/path", "/"])
        #expect(selection.targets.first?.mountID == 3)
        #expect(Self.reason(for: "/x", in: selection) == "same filesystem as /data/long/path")
    }

    @Test func shortestPathIsPreferredAmongEqualRoots() throws {
        let text = [
            Self.line(1, 0, "8:1", "/"),
            Self.line(2, 1, "8:16", "/a/b/c"),
            Self.line(3, 1, "8:16", "/zz"),
            Self.line(4, 1, "8:16", "/a/b/c/d"),
            Self.line(5, 1, "8:32", root: "/@data", "/srv/data"),
            Self.line(6, 1, "8:32", root: "/@data/x", "/d"),
        ].joined(separator: "\n")
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/d", "/zz", "/"])
        #expect(Self.reason(for: "/a/b/c", in: selection) == "same filesystem as /zz")
        #expect(Self.reason(for: "/a/b/c/d", in: selection) == "same filesystem as /zz")
        #expect(Self.reason(for: "/srv/data", in: selection) == "same filesystem as /d")
    }

    @Test func skippedDuplicatesNameTheMountThatIsFinallyFrozen() throws {
        // "/a/b/c" is chosen first, "/a/b/c/d" is left out as its duplicate, then "/zz" (shorter)
        // replaces "/a/b/c". Every duplicate must name "/zz", the mount that is really frozen.
        let text = [
            Self.line(1, 0, "8:1", "/"),
            Self.line(2, 1, "8:16", "/a/b/c"),
            Self.line(3, 1, "8:16", "/a/b/c/d"),
            Self.line(4, 1, "8:16", "/zz"),
            Self.line(5, 1, "8:32", root: "/sub", "/s/t"),
            Self.line(6, 1, "8:32", root: "/sub", "/s/t/u"),
            Self.line(7, 1, "8:32", "/whole/fs"),
        ].joined(separator: "\n")
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/whole/fs", "/zz", "/"])
        #expect(Self.reason(for: "/a/b/c", in: selection) == "same filesystem as /zz")
        #expect(Self.reason(for: "/a/b/c/d", in: selection) == "same filesystem as /zz")
        #expect(Self.reason(for: "/s/t", in: selection) == "same filesystem as /whole/fs")
        #expect(Self.reason(for: "/s/t/u", in: selection) == "same filesystem as /whole/fs")
        let frozen = Set(Self.mountPoints(selection))
        for (mountPoint, reason) in selection.skipped where reason.hasPrefix("same filesystem as ") {
            let named = String(reason.dropFirst("same filesystem as ".count))
            #expect(frozen.contains(named), "\(mountPoint) names \(named), which is not frozen")
        }
    }

    @Test func btrfsSubvolumesShareOneSuperblock() throws {
        let text = """
            1 0 0:31 /@ / rw,relatime - btrfs /dev/sda2 rw,subvolid=256,subvol=/@
            2 1 0:31 /@home /home rw,relatime - btrfs /dev/sda2 rw,subvolid=257,subvol=/@home
            3 1 0:31 /@log /var/log rw,relatime - btrfs /dev/sda2 rw,subvolid=258,subvol=/@log
            """
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/"])
        #expect(Self.reason(for: "/home", in: selection) == "same filesystem as /")
        #expect(Self.reason(for: "/var/log", in: selection) == "same filesystem as /")
    }

    @Test func readOnlyBindDoesNotHideTheWritableMount() throws {
        let text = [
            Self.line(1, 0, "8:1", "/"),
            Self.line(2, 1, "8:16", "/a", options: "ro,relatime"),
            Self.line(3, 1, "8:16", "/data"),
        ].joined(separator: "\n")
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/data", "/"])
        #expect(Self.reason(for: "/a", in: selection) == "mounted read-only")
    }

    // MARK: - Order

    @Test func deeperMountPointsFirstAndRootLast() throws {
        let text = [
            Self.line(1, 0, "8:1", "/"),
            Self.line(2, 1, "8:2", "/a"),
            Self.line(3, 2, "8:3", "/a/b"),
            Self.line(4, 3, "8:4", "/a/b/c"),
            Self.line(5, 1, "8:5", "/z"),
            Self.line(6, 5, "8:6", "/z/y"),
            Self.line(7, 1, "8:7", #"/a\040b"#),
        ].joined(separator: "\n")
        let selection = try FreezePlan.select(from: MountTable.parse(text))
        #expect(Self.mountPoints(selection) == ["/a/b/c", "/z/y", "/a/b", "/a b", "/z", "/a", "/"])
        // Every child comes before its parent.
        let order = Self.mountPoints(selection)
        for (index, child) in order.enumerated() {
            for earlier in order[..<index] where earlier != child {
                #expect(!(earlier == "/" || child.hasPrefix(earlier + "/")), "\(child) after its parent \(earlier)")
            }
        }
    }

    @Test func orderDoesNotDependOnTheTableOrder() throws {
        let lines = [
            Self.line(4, 3, "8:4", "/a/b/c"),
            Self.line(1, 0, "8:1", "/"),
            Self.line(3, 2, "8:3", "/a/b"),
            Self.line(2, 1, "8:2", "/a"),
        ]
        let forward = try FreezePlan.select(from: MountTable.parse(lines.joined(separator: "\n")))
        let backward = try FreezePlan.select(from: MountTable.parse(lines.reversed().joined(separator: "\n")))
        #expect(Self.mountPoints(forward) == ["/a/b/c", "/a/b", "/a", "/"])
        #expect(Self.mountPoints(backward) == ["/a/b/c", "/a/b", "/a", "/"])
    }

    @Test func depthCountsPathComponents() {
        #expect(FreezePlan.depth("/") == 0)
        #expect(FreezePlan.depth("/a") == 1)
        #expect(FreezePlan.depth("/a/b") == 2)
        #expect(FreezePlan.depth("/a b/c d") == 2)
        #expect(FreezePlan.depth("/var/lib/docker/overlay2/abc/merged") == 6)
    }

    // MARK: - Restriction to a list

    @Test func onlyRestrictsToTheNamedMountsInFreezeOrder() throws {
        let selection = try FreezePlan.select(from: Self.entries, only: ["/", "/data/db"])
        #expect(Self.mountPoints(selection) == ["/data/db", "/"])
        #expect(selection.skipped.isEmpty)
    }

    @Test func onlyOneMount() throws {
        let selection = try FreezePlan.select(from: Self.entries, only: ["/mnt/my disk"])
        #expect(
            selection.targets == [
                FreezeTarget(
                    mountPoint: "/mnt/my disk", fsType: "ext4", source: "/dev/sdd1",
                    device: "8:49", mountID: 33)
            ])
    }

    @Test func onlyWithTwoMountsOfOneFilesystemFreezesItOnce() throws {
        let selection = try FreezePlan.select(from: Self.entries, only: ["/srv/exports", "/data"])
        #expect(Self.mountPoints(selection) == ["/data"])
        #expect(Self.reason(for: "/srv/exports", in: selection) == "same filesystem as /data")
    }

    @Test func onlyUsesTheVisibleMountAtAStackedPoint() throws {
        let selection = try FreezePlan.select(from: Self.entries, only: ["/srv"])
        #expect(selection.targets.map(\.mountID) == [44])
    }

    @Test(arguments: ["/nonexistent", "/data/db/sub", "/data/", "data", "", "/mnt/my\\040disk"])
    func onlyAnUnknownPathIsNotAMountPoint(path: String) {
        #expect(throws: FreezePlan.SelectionError.notAMountPoint(path)) {
            try FreezePlan.select(from: Self.entries, only: ["/", path])
        }
    }

    @Test(arguments: [
        ("/run", "tmpfs is not a freezable block filesystem"),
        ("/scratch", "tmpfs is not a freezable block filesystem"),
        ("/proc", "proc is not a freezable block filesystem"),
        ("/mnt/nfs", "nfs4 is not a freezable block filesystem"),
        ("/mnt/sshfs", "fuse.sshfs is not a freezable block filesystem"),
        ("/var/lib/docker/overlay2/abc/merged", "overlay is not a freezable block filesystem"),
        ("/mnt/backup", "mounted read-only"),
        ("/mnt/ro view", "mounted read-only"),
    ])
    func onlyAnIneligibleMountIsNotFreezable(path: String, reason: String) {
        #expect(throws: FreezePlan.SelectionError.notFreezable(path, reason: reason)) {
            try FreezePlan.select(from: Self.entries, only: [path])
        }
    }

    @Test func selectionErrorsExplainThemselves() {
        #expect(FreezePlan.SelectionError.notAMountPoint("/x").description.contains("/x is not a mount point"))
        #expect(
            FreezePlan.SelectionError.notFreezable("/run", reason: "tmpfs is not a freezable block filesystem")
                .description == "/run cannot be frozen: tmpfs is not a freezable block filesystem")
    }

    // MARK: - Skip list

    @Test func skipExcludesAMount() throws {
        let selection = try FreezePlan.select(from: Self.entries, skip: ["/boot", "/mnt/my disk"])
        #expect(Self.mountPoints(selection) == ["/data/db", "/srv", "/data", "/"])
        #expect(Self.reason(for: "/boot", in: selection) == "excluded by the skip list")
        #expect(Self.reason(for: "/mnt/my disk", in: selection) == "excluded by the skip list")
    }

    @Test func skippingAMountSkipsItsWholeFilesystem() throws {
        // /srv/exports is a bind mount of /data's filesystem: skipping /data must not freeze it
        // through the other mount point.
        let selection = try FreezePlan.select(from: Self.entries, skip: ["/data"])
        #expect(Self.mountPoints(selection) == ["/mnt/my disk", "/data/db", "/srv", "/boot", "/"])
        #expect(!selection.targets.contains { $0.device == "8:17" })
        #expect(Self.reason(for: "/data", in: selection) == "excluded by the skip list")
        #expect(Self.reason(for: "/srv/exports", in: selection) == "excluded by the skip list")

        let viaBind = try FreezePlan.select(from: Self.entries, skip: ["/srv/exports"])
        #expect(!viaBind.targets.contains { $0.device == "8:17" })
    }

    @Test func skipOfAnUnknownPathChangesNothing() throws {
        let all = try FreezePlan.select(from: Self.entries)
        let skipped = try FreezePlan.select(from: Self.entries, skip: ["/nonexistent", "/run"])
        #expect(skipped.targets == all.targets)
    }

    @Test func skipRoot() throws {
        let selection = try FreezePlan.select(from: Self.entries, skip: ["/"])
        #expect(!Self.mountPoints(selection).contains("/"))
        #expect(Self.mountPoints(selection).count == 5)
    }

    @Test func skipWinsOverOnly() throws {
        let selection = try FreezePlan.select(from: Self.entries, only: ["/data", "/data/db"], skip: ["/data"])
        #expect(Self.mountPoints(selection) == ["/data/db"])
        #expect(Self.reason(for: "/data", in: selection) == "excluded by the skip list")
    }

    @Test func skippingEverythingLeavesNothing() throws {
        let all = try FreezePlan.select(from: Self.entries)
        let selection = try FreezePlan.select(from: Self.entries, skip: Self.mountPoints(all))
        #expect(selection.targets.isEmpty)
    }
}
