import CPluginHostShim
import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire
import Testing

/// Integration tests need root: they make loop filesystems and freeze them for real.
let isRoot = geteuid() == 0

/// The `pluginhost` binary built beside the test bundle.
let pluginhostBinary: String = {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let exe = String(decoding: buffer[0..<max(count, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var directory = exe
    while let slash = directory.lastIndex(of: "/") {
        directory = String(directory[..<slash])
        if access(directory + "/pluginhost", X_OK) == 0 { return directory + "/pluginhost" }
        if directory.isEmpty { break }
    }
    return "pluginhost-binary-not-built"
}()

/// A scratch directory (mode 0755, root's) with helpers for files, cleaned up on deinit.
final class Scratch {
    let path: String

    init(_ name: String = "it") {
        var template = Array("/tmp/pluginhost-\(name)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        chmod(path, 0o755)
    }

    deinit {
        sh("rm -rf '\(path)'")
    }

    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t = 0o600) -> String {
        let file = name.hasPrefix("/") ? name : "\(path)/\(name)"
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, mode)
        precondition(fd >= 0, "cannot write \(file)")
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
        chmod(file, mode)
        return file
    }

    func read(_ name: String) -> String {
        let file = name.hasPrefix("/") ? name : "\(path)/\(name)"
        guard let fd = try? FileDescriptor.open(file, O_RDONLY), let bytes = try? fd.readAll(limit: 64 << 20) else {
            return ""
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func exists(_ name: String) -> Bool { access("\(path)/\(name)", F_OK) == 0 }

    func mkdir(_ name: String) -> String {
        let directory = "\(path)/\(name)"
        Glibc.mkdir(directory, 0o755)
        return directory
    }
}

/// A loop-mounted ext4 or xfs image the test made; thawed and unmounted on deinit, also
/// when the test failed.
final class LoopFilesystem {
    let image: String
    let mountPoint: String
    let type: String

    init(
        in scratch: Scratch, name: String = "fs", type: String = "ext4", sizeMB: Int = 64,
        imageDirectory: String? = nil,
        mountPoint: String? = nil
    ) throws {
        self.type = type
        image = "\(imageDirectory ?? scratch.path)/\(name).img"
        self.mountPoint = mountPoint ?? scratch.mkdir(name)
        Glibc.mkdir(self.mountPoint, 0o755)
        let mkfs = type == "xfs" ? "mkfs.xfs -q -f" : "mkfs.ext4 -q -F"
        let status = sh(
            "truncate -s \(max(sizeMB, type == "xfs" ? 300 : 16))M '\(image)' && \(mkfs) '\(image)' && mount -o loop '\(image)' '\(self.mountPoint)'"
        )
        guard status == 0 else { throw FixtureError("cannot make a loop \(type) filesystem at \(self.mountPoint)") }
    }

    deinit { unmount() }

    private var mounted = true

    /// Thaws and unmounts (once).
    func unmount() {
        guard mounted else { return }
        mounted = false
        // Thaw first: unmounting a frozen filesystem would hang.
        sh("fsfreeze -u '\(mountPoint)' 2>/dev/null; umount '\(mountPoint)' 2>/dev/null || umount -l '\(mountPoint)'")
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a shell command line (for set-up and probes only) and returns its exit status.
@discardableResult
func sh(_ line: String) -> Int32 {
    guard
        let child = try? ChildProcess(
            spawning: Command(
                executable: "/bin/sh", arguments: ["-c", line],
                environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]))
    else { return -1 }
    if case .exited(.exited(let status)) = child.wait() { return status }
    return -1
}

/// The result of running the real binary.
struct Invocation {
    var status: Int32
    var stdout: String
    var stderr: String

    var report: OperationReport? { ReportStore.decode(Array(stdout.utf8)) }
}

/// A host installation in scratch directories: state dirs, config, scripts.
final class HostSandbox {
    let scratch: Scratch
    let runDirectory: String
    let stateDirectory: String

    init(_ name: String = "host") {
        scratch = Scratch(name)
        runDirectory = scratch.path + "/run"
        stateDirectory = scratch.path + "/state"
    }

    var environment: [String: String] {
        [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PLUGINHOST_RUN_DIR": runDirectory,
            "PLUGINHOST_STATE_DIR": stateDirectory,
        ]
    }

    /// Writes a script (mode 0700) and returns its path.
    func script(_ name: String, _ body: String) -> String {
        scratch.write(name, body, mode: 0o700)
    }

    /// Writes an Azure config (mode 0600) from JSON text and returns its path.
    func config(_ json: String, name: String = "config.json") -> String {
        scratch.write(name, json, mode: 0o600)
    }

    /// A config with the given pre/post scripts and extra fields.
    func config(pre: String, post: String, extra: String = "") -> String {
        config(
            """
            {"pluginName": "ScriptRunner", "preScriptLocation": "\(pre)", "postScriptLocation": "\(post)",
             "preScriptParams": [], "postScriptParams": [], "timeoutInSeconds": 20\(extra.isEmpty ? "" : ", " + extra)}
            """)
    }

    /// Runs `pluginhost ARGS` to completion — or the binary under another path (a hook name),
    /// from another working directory, with more environment.
    func invoke(
        _ arguments: [String], as path: String = pluginhostBinary, in workingDirectory: String = "/",
        environment extra: [String: String] = [:]
    ) -> Invocation {
        let process = start(arguments, as: path, in: workingDirectory, environment: extra)
        return process.finish()
    }

    /// Starts `pluginhost ARGS` in the background.
    func start(
        _ arguments: [String], as path: String = pluginhostBinary, in workingDirectory: String = "/",
        environment extra: [String: String] = [:]
    ) -> RunningHost {
        RunningHost(
            try! ChildProcess(
                spawning: Command(
                    executable: path, arguments: arguments,
                    environment: environment.merging(extra) { $1 },
                    workingDirectory: workingDirectory),
                outputCapacity: 16 << 20))
    }

    var paths: StatePaths { StatePaths(runDirectory: runDirectory, stateDirectory: stateDirectory) }

    /// Waits (bounded) until no operation holds the lock, e.g. a hook session that ended on its own.
    func waitUntilIdle(timeoutSeconds: Double = 120) -> Bool {
        let limit = Monotonic.now() + UInt64(timeoutSeconds * 1e9)
        while Monotonic.now() < limit {
            if OperationLock.currentHolder(paths: paths) == nil { return true }
            usleep(20_000)
        }
        return false
    }

    /// The freeze journal, when there is one that decodes.
    var journal: FreezeJournalRecord? {
        if case .record(let record) = FreezeJournal.read(at: paths.journalFile) { return record }
        return nil
    }

    /// Polls the journal (as `status` would) until `condition` holds; nil after `timeoutSeconds`.
    func waitForJournal(timeoutSeconds: Double = 30, _ condition: (FreezeJournalRecord) -> Bool) -> FreezeJournalRecord?
    {
        let limit = Monotonic.now() + UInt64(timeoutSeconds * 1e9)
        while Monotonic.now() < limit {
            if let journal, condition(journal) { return journal }
            usleep(5_000)
        }
        return nil
    }

    /// A snapshot command that marks (outside the frozen filesystems) that it runs — so the
    /// filesystems are frozen — and then holds for `seconds`.
    func holdWhileFrozen(_ seconds: Int) -> String {
        script("hold.sh", "#!/bin/sh\ntouch '\(scratch.path)/frozen.marker'\nexec sleep \(seconds)\n")
    }

    /// Waits until a `holdWhileFrozen` snapshot command runs, and returns the journal.
    func waitUntilFrozen(timeoutSeconds: Double = 20) -> FreezeJournalRecord? {
        let limit = Monotonic.now() + UInt64(timeoutSeconds * 1e9)
        while Monotonic.now() < limit {
            if scratch.exists("frozen.marker"), let journal { return journal }
            usleep(5_000)
        }
        return nil
    }
}

final class RunningHost {
    let process: ChildProcess
    init(_ process: ChildProcess) { self.process = process }
    var pid: Int32 { process.pid }

    func finish(timeoutSeconds: Double = 120) -> Invocation {
        let event = process.wait(until: Monotonic.Instant.now + .seconds(timeoutSeconds))
        guard case .exited(let termination) = event else {
            process.terminateGroup()
            return Invocation(
                status: -1, stdout: process.stdoutTail.text, stderr: "timed out: " + process.stderrTail.text)
        }
        let status: Int32
        switch termination {
        case .exited(let code): status = code
        case .signalled(let signal): status = 128 + signal
        }
        return Invocation(status: status, stdout: process.stdoutTail.text, stderr: process.stderrTail.text)
    }
}

/// Two ext4 filesystems where one's storage lies on the other, as in the dependency deadlock: `lower`
/// on a loop image, `upper` on a loop image FILE INSIDE `lower`, mounted at a shallower path
/// (so that ordering by path depth alone would freeze `lower` first). A watchdog process thaws
/// `lower` after `watchdogSeconds` whatever happens (a test that hangs must not leave the
/// machine with a frozen filesystem); teardown kills it, thaws and unmounts upper, then lower.
final class StackedFilesystems {
    let lower: LoopFilesystem
    let upper: LoopFilesystem
    private let watchdog: ChildProcess?

    init(in scratch: Scratch, watchdogSeconds: Int = 120) throws {
        let deep = scratch.mkdir("deep")
        _ = scratch.mkdir("deep/er")
        lower = try LoopFilesystem(in: scratch, name: "lower", sizeMB: 400, mountPoint: deep + "/er/lower")
        guard sh("mkdir -p '\(lower.mountPoint)/images'") == 0 else { throw FixtureError("mkdir in lower") }
        upper = try LoopFilesystem(
            in: scratch, name: "upper", sizeMB: 200, imageDirectory: lower.mountPoint + "/images",
            mountPoint: scratch.path + "/upper")
        watchdog = try? ChildProcess(
            spawning: Command(
                executable: "/bin/sh",
                arguments: [
                    "-c",
                    "sleep \(watchdogSeconds); fsfreeze -u '\(upper.mountPoint)'; fsfreeze -u '\(lower.mountPoint)'",
                ],
                environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]),
            outlivesHost: true)
    }

    /// Dirty data on `upper` (written, not synced): its FIFREEZE must write it into `lower`.
    func dirtyUpper(megabytes: Int = 64, name: String = "dirty") {
        sh("dd if=/dev/urandom of='\(upper.mountPoint)/\(name)' bs=1M count=\(megabytes) status=none")
    }

    deinit {
        watchdog?.signalGroup(SIGKILL)
        sh("fsfreeze -u '\(lower.mountPoint)' 2>/dev/null")
        upper.unmount()
        lower.unmount()
    }
}

/// A process that writes to a file on a filesystem and fsyncs it: it blocks while the
/// filesystem is frozen. It is never the test process itself.
final class Writer {
    let process: ChildProcess
    let file: String

    init(file: String) throws {
        self.file = file
        process = try ChildProcess(
            spawning: Command(
                executable: "/bin/sh",
                arguments: ["-c", "echo written > '\(file)' && sync '\(file)'"],
                environment: ["PATH": "/usr/bin:/bin"]))
    }

    deinit {
        // Still blocked means the test failed with the filesystem frozen: thaw it so that the
        // writer (and the unmount) can finish.
        if !finishes(within: 0) {
            sh("fsfreeze -u \"$(dirname '\(file)')\" 2>/dev/null")
        }
    }

    /// True if it finished within `seconds`.
    func finishes(within seconds: Double) -> Bool {
        if case .exited = process.wait(until: Monotonic.Instant.now + .seconds(seconds)) { return true }
        return false
    }
}

/// True while `pid` is a live process (a zombie counts as gone).
func processExists(_ pid: Int32) -> Bool {
    guard pid > 0, let file = try? FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY),
        let bytes = try? file.readAll(limit: 4096)
    else { return false }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// Where `needle` first occurs in `text`, as a character offset.
func offset(of needle: String, in text: String) -> Int? {
    let characters = Array(text)
    let pattern = Array(needle)
    guard !pattern.isEmpty, characters.count >= pattern.count else { return nil }
    return (0...(characters.count - pattern.count)).first { Array(characters[$0..<$0 + pattern.count]) == pattern }
}

/// A program run to completion, its output captured.
struct CommandOutput {
    var termination: Termination?
    var stdout: String
    var stderr: String
    var succeeded: Bool { termination == .exited(0) }
}

/// Runs `executable` directly (no shell) to completion, capturing its output; killed with its
/// process group after `timeoutSeconds`.
func capture(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:],
    timeoutSeconds: Double = 180
) -> CommandOutput {
    let base = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"]
    let child: ChildProcess
    do {
        child = try ChildProcess(
            spawning: Command(
                executable: executable, arguments: arguments,
                environment: base.merging(environment) { $1 }),
            outputCapacity: 64 << 20)
    } catch {
        return CommandOutput(termination: nil, stdout: "", stderr: "cannot start \(executable): \(error)")
    }
    let deadline = Monotonic.Instant.now + .seconds(timeoutSeconds)
    var termination: Termination?
    while termination == nil {
        switch child.wait(until: deadline) {
        case .exited(let end): termination = end
        case .deadlineReached:
            child.terminateGroup()
            return CommandOutput(
                termination: nil, stdout: child.stdoutTail.text,
                stderr: "timed out after \(timeoutSeconds) s: " + child.stderrTail.text)
        case .readable: continue
        }
    }
    return CommandOutput(termination: termination, stdout: child.stdoutTail.text, stderr: child.stderrTail.text)
}

/// An existing image file (a snapshot copy) loop-mounted at `mountPoint` (mode 0755); unmounted by
/// `unmount()` or on deinit.
final class MountedImage {
    let image: String
    let mountPoint: String
    private var mounted = false

    init(image: String, mountPoint: String) throws {
        self.image = image
        self.mountPoint = mountPoint
        Glibc.mkdir(mountPoint, 0o755)
        guard sh("mount -o loop '\(image)' '\(mountPoint)' && chmod 755 '\(mountPoint)'") == 0 else {
            throw FixtureError("cannot mount \(image) at \(mountPoint)")
        }
        mounted = true
    }

    deinit { unmount() }

    func unmount() {
        guard mounted else { return }
        mounted = false
        sh("umount '\(mountPoint)' 2>/dev/null || umount -l '\(mountPoint)'")
    }
}

/// `mountPoint` opened, when it is the root of a loop-device filesystem (a test's own image):
/// the probes below freeze and thaw, and must never reach the filesystem that holds the path
/// instead (`/`, when a test's mount is already gone).
private func openTestMount(_ mountPoint: String) -> FileDescriptor? {
    guard let directory = try? FileDescriptor.open(mountPoint, O_RDONLY | O_DIRECTORY) else { return nil }
    var mine = stat()
    var parent = stat()
    guard fstat(directory.rawValue, &mine) == 0, stat(mountPoint + "/..", &parent) == 0 else { return nil }
    let major = ((mine.st_dev >> 8) & 0xfff) | ((mine.st_dev >> 32) & ~0xfff)
    let loopMajor: UInt = 7
    guard mine.st_dev != parent.st_dev, major == loopMajor else {
        Issue.record("\(mountPoint) is not the root of a loop filesystem: not probed")
        return nil
    }
    return directory
}

/// Whether `mountPoint` is frozen now, by anyone: FITHAW answers EINVAL when it is not. A
/// successful probe thaws it, so probe only where nothing may be frozen any more (it is then a
/// failure, and the thaw its cleanup). Unlike a writer with a time limit, a loaded machine's
/// slow I/O cannot make it fail.
func wasFrozen(thawing mountPoint: String) -> Bool {
    guard let directory = openTestMount(mountPoint) else { return false }
    return ph_fithaw(directory.rawValue) == 0
}

/// Whether `mountPoint` is frozen now, by anyone, without thawing it: FIFREEZE answers EBUSY
/// when it is. When it was not, the probe's own freeze is undone at once (and the probe is
/// then a failure). Unlike a writer that must not finish within a time limit, a loaded
/// machine's slow I/O cannot make it pass.
func isFrozen(probing mountPoint: String) -> Bool {
    guard let directory = openTestMount(mountPoint) else { return false }
    if ph_fifreeze(directory.rawValue) == 0 {
        _ = ph_fithaw(directory.rawValue)
        return false
    }
    return ph_errno() == EBUSY
}
