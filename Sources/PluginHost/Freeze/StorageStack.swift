import Glibc
import PluginHostSupport

/// Where a filesystem's data lives, as far as freezing is concerned: a filesystem on a loop
/// device stores its data in the loop's backing file, so on the filesystem holding that file;
/// device-mapper and md devices store theirs on their slaves (`/sys/block/*/slaves`), and a
/// partition on its disk. Freezing the filesystem that holds the backing file first would make
/// the FIFREEZE of the one above flush into a frozen filesystem and never return.
public struct StorageStack: Sendable {
    /// The sysfs mount (a test passes a tree of its own).
    public var sysfs: String
    /// The device ("major:minor", as mountinfo writes it) of the filesystem holding `path`.
    public var filesystemDevice: @Sendable (String) -> String?
    /// The device number ("major:minor") of `path` if it is a block device node.
    public var blockDeviceNode: @Sendable (String) -> String?

    public init(
        sysfs: String, filesystemDevice: @escaping @Sendable (String) -> String?,
        blockDeviceNode: @escaping @Sendable (String) -> String?
    ) {
        self.sysfs = sysfs
        self.filesystemDevice = filesystemDevice
        self.blockDeviceNode = blockDeviceNode
    }

    /// The running system.
    public static let live = StorageStack(
        sysfs: "/sys",
        filesystemDevice: { path in
            (try? FileSystem.status(of: path)).map { deviceName(UInt($0.st_dev)) }
        },
        blockDeviceNode: { path in
            guard let info = try? FileSystem.status(of: path), info.st_mode & S_IFMT == S_IFBLK else { return nil }
            return deviceName(UInt(info.st_rdev))
        })

    /// The block device a filesystem is on: its own device number when that is a block device
    /// (ext4, xfs), else its source's (btrfs shows an anonymous device in mountinfo).
    func blockDevice(of target: FreezeTarget) -> String? {
        if FileSystem.exists("\(sysfs)/dev/block/\(target.device)") { return target.device }
        return blockDeviceNode(target.source)
    }

    /// The devices of every filesystem on which `target`'s data is stored, at any depth
    /// (a loop file on a filesystem on a loop file on …).
    public func backingFilesystems(of target: FreezeTarget) -> Set<String> {
        guard let device = blockDevice(of: target) else { return [] }
        var found = Set<String>()
        var visited = Set<String>()
        collect(blockDevice: device, into: &found, visited: &visited)
        found.remove(target.device)
        return found
    }

    private func collect(blockDevice device: String, into found: inout Set<String>, visited: inout Set<String>) {
        guard visited.insert(device).inserted else { return }
        var directory = "\(sysfs)/dev/block/\(device)"
        // A partition's loop or slaves are its disk's: the partition's directory is inside it.
        if FileSystem.exists(directory + "/partition") { directory += "/.." }
        if let backing = readLine(directory + "/loop/backing_file") {
            let path = backing.hasSuffix(" (deleted)") ? String(backing.dropLast(" (deleted)".count)) : backing
            if let filesystem = filesystemDevice(path) {
                found.insert(filesystem)
                // That filesystem may itself live on another loop file or a stacked device.
                collect(blockDevice: filesystem, into: &found, visited: &visited)
            }
        }
        for slave in entries(of: directory + "/slaves") {
            if let number = readLine("\(directory)/slaves/\(slave)/dev") {
                collect(blockDevice: number, into: &found, visited: &visited)
            }
        }
    }

    private func readLine(_ path: String) -> String? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY), let bytes = try? file.readAll(limit: 1 << 16) else {
            return nil
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let line =
            text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return line.isEmpty ? nil : line
    }

    private func entries(of directory: String) -> [String] {
        ((try? FileSystem.entries(of: directory)) ?? []).sorted()
    }

    /// Dependency waves for `targets`: a filesystem is in a wave before every target its data
    /// lies on; independent filesystems share a wave. Returns each target's wave, in order.
    public func waves(for targets: [FreezeTarget]) -> [Int] {
        let index = Dictionary(
            targets.enumerated().map { ($0.element.device, $0.offset) }, uniquingKeysWith: { first, _ in first })
        // dependsOn[i]: the targets that hold target i's data (i must freeze before them).
        let dependsOn = targets.map { target in backingFilesystems(of: target).compactMap { index[$0] } }
        var wave = [Int](repeating: 0, count: targets.count)
        // Longest path: at most targets.count rounds; a cycle (impossible with real storage)
        // stops there rather than looping.
        for _ in 0..<targets.count {
            var changed = false
            for (above, below) in dependsOn.enumerated() {
                for lower in below where wave[lower] < wave[above] + 1 {
                    wave[lower] = wave[above] + 1
                    changed = true
                }
            }
            if !changed { break }
        }
        return wave
    }
}
