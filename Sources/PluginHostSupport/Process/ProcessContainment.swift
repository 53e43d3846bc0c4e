import CPluginHostShim
import Glibc

/// A process an operation started that was killed because its owner went (or stopped it), as
/// the report names it.
public struct KilledProcess: Sendable, Codable, Equatable {
    public var pid: Int32
    /// Its command line (or name), cut to 200 bytes.
    public var command: String
    /// What it belonged to: "pre-script attempt 1", "snapshot command", "plugin mysql".
    public var owner: String
    /// Why: "timed out", "interrupted", "its worker ended", …
    public var reason: String

    public init(pid: Int32, command: String, owner: String, reason: String) {
        self.pid = pid
        self.command = command
        self.owner = owner
        self.reason = reason
    }
}

/// Everything one operation starts dies with its owner: each script attempt, the
/// snapshot command and each plugin worker runs in a *cell* — a cgroup v2 of its own inside the
/// operation's cgroup, joined by the child before its first instruction, so that neither setsid
/// nor a double fork leaves it. A cell is killed with `cgroup.kill` when its process is stopped
/// (timeout, signal), when its worker ends, and — by the *warden*, a tiny forked process that
/// outlives the host — when the host dies, even by SIGKILL.
///
/// Without a writable cgroup v2 with `cgroup.kill` (kernel 5.14+), cells are process groups:
/// the warden kills each group when the host dies, but a process that leaves its group (setsid)
/// or the children of a worker's own commands can survive.
public final class ProcessContainment {
    public enum Mechanism: Sendable, Equatable, CustomStringConvertible {
        /// The operation's cgroup directory.
        case cgroup(String)
        /// Why there is no cgroup.
        case processGroups(String)

        public var description: String {
            switch self {
            case .cgroup(let path): "cgroup \(path)"
            case .processGroups(let why): "process groups (\(why))"
            }
        }
    }

    /// Where one process tree of the operation lives.
    public final class Cell {
        /// For the report: "pre-script attempt 1", "plugin shell".
        public let label: String
        /// Killed when its first process exits (a worker: what it started must not outlive it).
        public let diesWithItsProcess: Bool
        let name: String
        private(set) var directory: String?
        /// The cgroup's directory, open until the first process has started in it.
        private(set) var opened: FileDescriptor?
        unowned let containment: ProcessContainment

        init(
            label: String, name: String, directory: String?, opened: FileDescriptor?, diesWithItsProcess: Bool,
            containment: ProcessContainment
        ) {
            self.label = label
            self.name = name
            self.directory = directory
            self.opened = opened
            self.diesWithItsProcess = diesWithItsProcess
            self.containment = containment
        }

        /// The cgroup's directory, for the child to be started in (-1: no cgroup).
        public var cgroupDescriptor: Int32 { opened?.rawValue ?? -1 }

        /// The order the child sends the warden before it runs anything, and the warden's orders
        /// socket to send it on (nil, -1: nothing to send).
        var wardenOrder: ph_warden_order? { containment.wardenOrder(for: self) }
        var wardenDescriptor: Int32 { containment.warden?.orders.rawValue ?? -1 }

        /// Called once the first process is started in the cell (its descendants are born in it:
        /// the directory is not needed any more, and one descriptor fewer is held).
        public func joined(_ pid: Int32, error: Int32 = 0) {
            opened = nil
            if error != 0 {
                containment.warnings.append(
                    """
                    \(label) (pid \(pid)) could not join its cgroup \
                    (\(SystemError("open or write cgroup.procs", errno: error))): only its process group is killed with it
                    """
                )
            }
        }

        /// The processes in the cell now (empty without a cgroup).
        public var members: [Int32] {
            guard let directory else { return [] }
            return ProcessContainment.pids(in: directory)
        }

        /// Sends `signal` to every process in the cell (the process group's job without a cgroup),
        /// and returns who they were, for `kill(reason:alsoNaming:)`.
        @discardableResult
        public func signal(_ signal: Int32) -> [(pid: Int32, command: String)] {
            let named = members.map { (pid: $0, command: ProcessContainment.commandLine($0)) }
            for (pid, _) in named { _ = Glibc.kill(pid, signal) }
            return named
        }

        /// Kills every process in the cell (cgroup.kill) and names them in the report, with
        /// those in `alsoNaming` (signalled earlier, gone since).
        public func kill(reason: String, alsoNaming earlier: [(pid: Int32, command: String)] = []) {
            guard let directory else { return }
            let members = self.members
            let named =
                earlier
                + members.filter { pid in !earlier.contains { $0.pid == pid } }
                .map { (pid: $0, command: ProcessContainment.commandLine($0)) }
            containment.record(
                named.map { KilledProcess(pid: $0.pid, command: $0.command, owner: label, reason: reason) })
            guard !members.isEmpty else { return }
            if !ProcessContainment.writeOne(directory + "/cgroup.kill") {
                for pid in members { _ = Glibc.kill(pid, SIGKILL) }
            }
        }

        /// Removes the cell's cgroup if nothing lives in it any more (a script attempt that
        /// ended and left nothing behind), so that many attempts do not pile up cgroups.
        public func removeIfEmpty() {
            guard let directory, members.isEmpty, rmdir(directory) == 0 else { return }
            self.directory = nil
            opened = nil
            containment.cells.removeAll { $0 === self }
        }
    }

    public let mechanism: Mechanism
    /// What was killed so far (by the host, or by the warden while the host lived).
    public private(set) var killed: [KilledProcess] = []
    public fileprivate(set) var warnings: [String] = []

    fileprivate var cells: [Cell] = []
    private var cellsMade = 0
    fileprivate var warden: (pid: Int32, orders: FileDescriptor, notes: FileDescriptor)?
    private var finished = false

    /// The cgroup v2 hierarchy's mount point and this process's cgroup in it, or why not.
    public static func ownCgroup() -> Result<String, SystemError> {
        guard let file = try? FileDescriptor.open("/proc/self/cgroup", O_RDONLY),
            let bytes = try? file.readAll(limit: 1 << 16)
        else { return .failure(SystemError("read /proc/self/cgroup")) }
        guard
            let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first(where: {
                $0.hasPrefix("0::")
            })
        else {
            return .failure(SystemError("no cgroup v2 membership", errno: ENOENT))
        }
        let own = String(line.dropFirst(3))
        guard let mounts = try? MountTable.current(),
            let mount = mounts.last(where: {
                $0.fsType == "cgroup2" && (own == $0.root || own.hasPrefix($0.root == "/" ? "/" : $0.root + "/"))
            })
        else {
            return .failure(SystemError("no cgroup2 mount", errno: ENOENT))
        }
        let relative = mount.root == "/" ? own : String(own.dropFirst(mount.root.count))
        let path = mount.mountPoint + (relative == "/" ? "" : relative)
        return .success(path)
    }

    /// Creates the operation's cgroup `pluginhost.PID.NAME` beside this process (or falls back to
    /// process groups, saying why; always without `cgroups`), removes what dead operations left
    /// there, and starts the warden.
    public init(name: String, cgroups: Bool = true) {
        var mechanism: Mechanism
        switch cgroups ? Self.ownCgroup() : .failure(SystemError("cgroups turned off", errno: 0)) {
        case .failure(let error) where !cgroups:
            mechanism = .processGroups(error.call)
        case .failure(let error):
            mechanism = .processGroups("no cgroup v2: \(error)")
        case .success(let own):
            let sweep = Self.sweepDeadOperations(in: own)
            let path = "\(own)/pluginhost.\(getpid()).\(name)"
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                mechanism = .processGroups("cannot create a cgroup in \(own): \(SystemError("mkdir"))")
            } else if access(path + "/cgroup.kill", W_OK) != 0 {
                rmdir(path)
                mechanism = .processGroups("no cgroup.kill in \(own) (Linux 5.14 or later)")
            } else {
                mechanism = .cgroup(path)
            }
            warnings += sweep
        }
        var pid: pid_t = 0
        var orders: Int32 = -1
        var notes: Int32 = -1
        let path: String? = if case .cgroup(let path) = mechanism { path } else { nil }
        let rc = path.map { ph_warden_start($0, &pid, &orders, &notes) } ?? ph_warden_start(nil, &pid, &orders, &notes)
        if rc == 0 {
            warden = (pid, FileDescriptor(owning: orders), FileDescriptor(owning: notes))
        } else {
            warnings.append(
                """
                cannot start the warden (\(SystemError("fork", errno: rc))): what this operation starts may outlive \
                the host if it is killed
                """
            )
        }
        self.mechanism = mechanism
    }

    deinit { finish() }

    /// A new cell for one process tree. `diesWithItsProcess`: killed as soon as its first process
    /// exits (a worker), rather than with the operation.
    public func cell(_ label: String, diesWithItsProcess: Bool = false) -> Cell {
        cellsMade += 1
        let name = "\(cellsMade)-" + String(label.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        var directory: String?
        var opened: FileDescriptor?
        if case .cgroup(let path) = mechanism {
            let candidate = "\(path)/\(name)"
            if mkdir(candidate, 0o755) == 0 || errno == EEXIST,
                let file = try? FileDescriptor.open(candidate, O_RDONLY | O_DIRECTORY)
            {
                directory = candidate
                opened = file
            } else {
                warnings.append(
                    "cannot create the cgroup of the \(label) (\(SystemError("mkdir"))): only its process group is killed with it"
                )
            }
        }
        let cell = Cell(
            label: label, name: name, directory: directory, opened: opened, diesWithItsProcess: diesWithItsProcess,
            containment: self)
        cells.append(cell)
        return cell
    }

    /// What the warden must know of a cell's first process: to kill the cell when a worker
    /// exits, and (without cgroups) which process group to kill if the host dies. The process
    /// sends it itself before it runs anything (`pid`/`group` -1: its own pid), so that a host
    /// killed just after the spawn cannot leave it unknown. nil: nothing to tell.
    fileprivate func wardenOrder(for cell: Cell) -> ph_warden_order? {
        guard warden != nil else { return nil }
        let cgroup = cell.directory != nil
        guard cell.diesWithItsProcess || !cgroup else { return nil }  // the operation's cgroup covers it
        var order = ph_warden_order()
        order.kind = PH_WARDEN_WATCH
        order.pid = cell.diesWithItsProcess ? -1 : 0
        order.group = cgroup ? 0 : -1
        withUnsafeMutableBytes(of: &order.cell) { raw in
            for (index, byte) in cell.name.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        return order
    }

    fileprivate func record(_ processes: [KilledProcess]) {
        for process in processes where !killed.contains(where: { $0.pid == process.pid && $0.owner == process.owner }) {
            killed.append(process)
        }
    }

    /// The end of the operation: what a worker's cell still holds is killed; what a script or
    /// the snapshot command left running (a daemon it started, say) is let go into this
    /// process's own cgroup and named in `warnings`; the cgroups are removed and the warden
    /// stops. Idempotent.
    public func finish() {
        guard !finished else { return }
        finished = true
        collectNotes()
        var ownProcs: String?
        if case .success(let own) = Self.ownCgroup() { ownProcs = own + "/cgroup.procs" }
        for cell in cells {
            guard let directory = cell.directory else { continue }
            if cell.diesWithItsProcess {
                cell.kill(reason: "its worker ended")
            } else {
                var released: [String] = []
                for _ in 0..<8 {
                    let members = cell.members
                    if members.isEmpty { break }
                    for pid in members {
                        let command = Self.commandLine(pid)
                        if let ownProcs, Self.write("\(pid)", to: ownProcs) {
                            released.append("pid \(pid) (\(command))")
                        }
                    }
                }
                if !released.isEmpty {
                    warnings.append(
                        "the \(cell.label) left \(released.joined(separator: ", ")) running; let go at the end of the operation"
                    )
                }
                cell.kill(reason: "could not be let go at the end of the operation")
            }
            Self.waitEmpty(directory, milliseconds: 2000)
            rmdir(directory)
        }
        collectNotes()
        if case .cgroup(let path) = mechanism { rmdir(path) }
        guard let warden else { return }
        self.warden = nil
        var order = ph_warden_order()
        order.kind = PH_WARDEN_DONE
        _ = withUnsafeBytes(of: &order) { send(warden.orders.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        warden.orders.close()
        // It exits at once (nothing is left to kill); do not wait long for one stuck anyway.
        let pidfd = ph_pidfd_open(warden.pid)
        if pidfd >= 0 {
            var event = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            _ = poll(&event, 1, 2000)
            close(pidfd)
        }
        var status: Int32 = 0
        _ = waitpid(warden.pid, &status, WNOHANG)
    }

    /// The processes the warden killed on its own (a worker died while the host lived).
    private func collectNotes() {
        guard let warden else { return }
        var note = ph_warden_note()
        while withUnsafeMutableBytes(of: &note, { read(warden.notes.rawValue, $0.baseAddress, $0.count) })
            == MemoryLayout<ph_warden_note>.size
        {
            let cellName = Self.string(of: note.cell)
            let label = cells.first { $0.name == cellName }?.label ?? cellName
            record([
                KilledProcess(
                    pid: note.pid, command: Self.string(of: note.comm), owner: label, reason: "its worker ended")
            ])
        }
    }

    // MARK: - cgroupfs

    /// Operations whose host is gone but whose cgroup is still there (host and warden killed
    /// together): what is in them is killed, and they are removed.
    static func sweepDeadOperations(in own: String) -> [String] {
        guard let directory = opendir(own) else { return [] }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if entry.pointee.d_type == DT_DIR && name.hasPrefix("pluginhost.") { names.append(name) }
        }
        closedir(directory)
        var warnings: [String] = []
        for name in names {
            let parts = name.split(separator: ".", maxSplits: 2)
            guard parts.count == 3, let pid = Int32(parts[1]), pid != getpid(),
                Glibc.kill(pid, 0) != 0 && errno == ESRCH
            else { continue }
            let path = "\(own)/\(name)"
            let left = pids(in: path, recursive: true).map { "pid \($0) (\(commandLine($0)))" }
            if !left.isEmpty {
                _ = writeOne(path + "/cgroup.kill")
                warnings.append(
                    "killed \(left.joined(separator: ", ")) left by operation \(parts[2]) of a host (pid \(pid)) that is gone"
                )
                waitEmpty(path, milliseconds: 2000)
            }
            removeTree(path)
        }
        return warnings
    }

    static func pids(in directory: String, recursive: Bool = false) -> [Int32] {
        var result: [Int32] = []
        if let file = try? FileDescriptor.open(directory + "/cgroup.procs", O_RDONLY),
            let bytes = try? file.readAll(limit: 1 << 20)
        {
            result = String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { Int32($0) }
        }
        if recursive {
            for child in subdirectories(directory) { result += pids(in: directory + "/" + child, recursive: true) }
        }
        return result
    }

    static func subdirectories(_ directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if entry.pointee.d_type == DT_DIR && name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func removeTree(_ directory: String) {
        for child in subdirectories(directory) { removeTree(directory + "/" + child) }
        rmdir(directory)
    }

    /// Waits (a little) until the cgroup is empty: rmdir fails while it is populated.
    static func waitEmpty(_ directory: String, milliseconds: Int) {
        for _ in 0..<(milliseconds / 5) {
            guard let file = try? FileDescriptor.open(directory + "/cgroup.events", O_RDONLY),
                let bytes = try? file.readAll(limit: 4096)
            else { return }
            if String(decoding: bytes, as: UTF8.self).contains("populated 0") { return }
            usleep(5000)
        }
    }

    static func writeOne(_ path: String) -> Bool { write("1", to: path) }

    static func write(_ text: String, to path: String) -> Bool {
        guard let file = try? FileDescriptor.open(path, O_WRONLY) else { return false }
        return (try? file.writeAll(text)) != nil
    }

    /// /proc/PID/cmdline with spaces, or its name; at most 200 bytes.
    static func commandLine(_ pid: Int32) -> String {
        if let file = try? FileDescriptor.open("/proc/\(pid)/cmdline", O_RDONLY),
            let bytes = try? file.readAll(limit: 1 << 16), !bytes.isEmpty
        {
            let text = String(decoding: bytes.prefix(200).map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return text.trimmingTrailingSpaces
        }
        if let file = try? FileDescriptor.open("/proc/\(pid)/comm", O_RDONLY), let bytes = try? file.readAll(limit: 64)
        {
            return String(decoding: bytes, as: UTF8.self).trimmingTrailingSpaces
        }
        return "?"
    }

    static func string<T>(of tuple: T) -> String {
        withUnsafeBytes(of: tuple) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
}

extension String {
    fileprivate var trimmingTrailingSpaces: String {
        var text = Substring(self)
        while let last = text.last, last == " " || last == "\n" { text = text.dropLast() }
        return String(text)
    }
}
