import Glibc
import PluginHostSupport
import Testing

/// "Does this path lie on a filesystem we freeze" — one rule (FreezeScope) for the host's
/// data-path warnings and both database plugins, checked on real mounts: a bind mount and a
/// btrfs subvolume (own st_dev) are on the frozen filesystem; another filesystem is not.
@Suite("Freeze scope on real mounts", .serialized, .enabled(if: isRoot, "needs root for loop mounts"))
struct FreezeScopeTests {
    @Test func bindMountsShareTheirFilesystemAndOthersDoNot() throws {
        let scratch = Scratch("scope")
        let fs = try LoopFilesystem(in: scratch, name: "data")
        let other = try LoopFilesystem(in: scratch, name: "other")
        #expect(sh("mkdir -p '\(fs.mountPoint)/db/sub' && touch '\(fs.mountPoint)/db/file'") == 0)
        let bind = scratch.mkdir("bind")
        #expect(sh("mount --bind '\(fs.mountPoint)/db' '\(bind)'") == 0)
        defer { sh("umount '\(bind)'") }
        // A symlink on another filesystem pointing into the frozen one: the target counts.
        #expect(sh("ln -s '\(fs.mountPoint)/db' '\(other.mountPoint)/link'") == 0)

        let scope = FreezeScope(freezeMounts: [fs.mountPoint])
        #expect(scope.freezeMount(holding: fs.mountPoint + "/db/file") == fs.mountPoint)
        #expect(scope.freezeMount(holding: bind + "/sub") == fs.mountPoint)
        #expect(scope.freezeMount(holding: other.mountPoint + "/link/file") == fs.mountPoint)
        #expect(scope.freezeMount(holding: other.mountPoint) == nil)
        #expect(scope.freezeMount(holding: scratch.path + "/missing") == nil)
        #expect(scope.filesystem(holding: bind)?.mountPoint == bind)
        // Freezing the bind mount covers the original mount point as well: one superblock.
        #expect(FreezeScope(freezeMounts: [bind]).freezeMount(holding: fs.mountPoint + "/db/file") == bind)
    }

    @Test(
        .enabled(
            if: access("/sbin/mkfs.btrfs", X_OK) == 0 || access("/usr/sbin/mkfs.btrfs", X_OK) == 0, "needs btrfs-progs")
    )
    func aBtrfsSubvolumeIsOnItsFilesystem() throws {
        let scratch = Scratch("scope-btrfs")
        let image = scratch.path + "/btrfs.img"
        let mountPoint = scratch.mkdir("btrfs")
        guard
            sh("truncate -s 200M '\(image)' && mkfs.btrfs -q -f '\(image)' && mount -o loop '\(image)' '\(mountPoint)'")
                == 0
        else {
            throw FixtureError("cannot make a loop btrfs filesystem")
        }
        defer { sh("fsfreeze -u '\(mountPoint)' 2>/dev/null; umount '\(mountPoint)' || umount -l '\(mountPoint)'") }
        #expect(sh("btrfs -q subvolume create '\(mountPoint)/vol' && mkdir '\(mountPoint)/vol/data'") == 0)
        var root = stat()
        var volume = stat()
        stat(mountPoint, &root)
        stat(mountPoint + "/vol/data", &volume)
        #expect(root.st_dev != volume.st_dev, "a btrfs subvolume has a device number of its own")
        #expect(FreezeScope(freezeMounts: [mountPoint]).freezeMount(holding: mountPoint + "/vol/data") == mountPoint)
    }
}
