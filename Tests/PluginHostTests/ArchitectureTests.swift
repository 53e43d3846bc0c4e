import Glibc
import PluginHostSupport
import Testing

/// The process roles' rules, checked from the source tree (docs/ARCHITECTURE.md): what each
/// runtime may import, and which code alone may load plugins or rewire stdio.
@Suite("Architecture")
struct ArchitectureTests {
    static let sources =
        String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/")).withLeadingSlash + "/Sources"

    /// Every Swift file under Sources/`target`, with its text.
    static func files(in target: String) -> [(path: String, text: String)] {
        var result: [(String, String)] = []
        func walk(_ directory: String) {
            guard let handle = opendir(directory) else { return }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name.hasPrefix(".") { continue }
                let path = directory + "/" + name
                if entry.pointee.d_type == DT_DIR {
                    walk(path)
                } else if name.hasSuffix(".swift"), let file = try? FileDescriptor.open(path, O_RDONLY),
                    let bytes = try? file.readAll(limit: 1 << 22)
                {
                    result.append((path, String(decoding: bytes, as: UTF8.self)))
                }
            }
        }
        walk(sources + "/" + target)
        return result
    }

    static func imports(_ text: String) -> Set<String> {
        var modules = Set<String>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if let index = words.firstIndex(of: "import"), index <= 1, index + 1 < words.count,
                index == 0 || ["public", "package", "internal", "@_exported"].contains(words[0])
            {
                modules.insert(String(words[index + 1]))
            }
        }
        return modules
    }

    /// True when `line` (outside a comment) calls the free function `name`.
    static func calls(_ name: String, in line: Substring) -> Bool {
        let code = Array((line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").utf8)
        let pattern = Array((name + "(").utf8)
        guard code.count >= pattern.count else { return false }
        for start in 0...(code.count - pattern.count) where Array(code[start..<start + pattern.count]) == pattern {
            let before = start == 0 ? UInt8(ascii: " ") : code[start - 1]
            let partOfName =
                before == UInt8(ascii: "_") || before == UInt8(ascii: ".")
                || (before | 0x20 >= UInt8(ascii: "a") && before | 0x20 <= UInt8(ascii: "z"))
                || (before >= 0x30 && before <= 0x39)
            if !partOfName { return true }
        }
        return false
    }

    static let targets = [
        "PluginHost", "PluginHostCLI", "PluginHostGuard", "PluginHostWorker", "PluginHostSession",
        "PluginHostGroup", "PluginHostWire", "PluginHostSupport", "PluginKit",
    ]

    @Test func theSourceTreeIsFound() {
        for target in Self.targets {
            #expect(!Self.files(in: target).isEmpty, "no sources for \(target) under \(Self.sources)")
        }
    }

    /// The guard must not allocate or log while frozen: it may see nothing that could.
    @Test func theGuardImportsOnlyTheShimGlibcAndTheWire() {
        for (path, text) in Self.files(in: "PluginHostGuard") {
            let extra = Self.imports(text).subtracting(["CPluginHostShim", "Glibc", "PluginHostWire"])
            #expect(extra.isEmpty, "\(path) imports \(extra.sorted())")
        }
    }

    @Test func onlyTheWorkerLoadsPluginsOrTouchesLibffiAndTheABI() {
        for target in Self.targets where target != "PluginHostWorker" {
            for (path, text) in Self.files(in: target) {
                #expect(!text.contains("dlopen("), "\(path) calls dlopen")
                #expect(!text.contains("dlsym("), "\(path) calls dlsym")
                let forbidden = Self.imports(text).intersection(["CFFICall", target == "PluginKit" ? "" : "PluginABI"])
                #expect(forbidden.isEmpty, "\(path) imports \(forbidden.sorted())")
            }
        }
    }

    @Test func theEngineNeverPrintsExitsOrRewiresStdio() {
        for (path, text) in Self.files(in: "PluginHost") {
            for function in ["print", "exit", "_exit", "dup2", "abort"] {
                let hit = text.split(separator: "\n").first { Self.calls(function, in: $0) }
                #expect(hit == nil, "\(path): \(hit ?? "")")
            }
            let runtimes = Self.imports(text).intersection(["PluginHostGuard", "PluginHostWorker", "PluginHostSession"])
            #expect(runtimes.isEmpty, "\(path) imports the runtime \(runtimes.sorted())")
        }
    }

    /// The host stays single-threaded and fork-safe with a consistency group: only the group
    /// process talks to etcd (opens TCP connections, uses TLS).
    @Test func onlyTheGroupRuntimeOpensNetworkConnections() {
        for target in Self.targets where target != "PluginHostGroup" {
            for (path, text) in Self.files(in: target) {
                #expect(!Self.imports(text).contains("CPluginHostTLS"), "\(path) imports the TLS shim")
                let hit = text.split(separator: "\n").first {
                    Self.calls("getaddrinfo", in: $0) || $0.contains("AF_INET")
                }
                #expect(hit == nil, "\(path): \(hit ?? "")")
            }
        }
    }

    /// The system calls PluginHostSupport/System wraps (one typed wrapper per call, EINTR
    /// policy in its doc): engine code calls the wrappers, never the C function.
    static let wrappedCalls = [
        "poll", "socketpair", "flock", "opendir", "readdir", "closedir", "socket", "connect", "bind", "listen",
        "accept", "sendto", "ftruncate", "fcntl", "mkdir", "unlink", "rename", "lstat", "fstatat",
    ]

    /// The first line of `text` that calls one of `wrappedCalls` (or `send`/`recv` through
    /// `Glibc.`), declarations of methods of the same name aside.
    static func directSystemCall(in text: String) -> Substring? {
        text.split(separator: "\n").first { line in
            wrappedCalls.contains { name in calls(name, in: line) && !line.contains("func \(name)(") }
                || (wrappedCalls + ["send", "recv"]).contains { line.contains("Glibc.\($0)(") }
        }
    }

    @Test func theEngineCallsTheSystemCallWrappers() {
        for target in ["PluginHost", "PluginHostCLI", "PluginHostSession", "PluginHostGroup"] {
            for (path, text) in Self.files(in: target) {
                let hit = Self.directSystemCall(in: text)
                #expect(hit == nil, "\(path) calls the C function, not its wrapper: \(hit ?? "")")
            }
        }
    }

    /// Time is a `Monotonic.Instant` and a `Duration`: no raw reading and no hand conversion of
    /// nanoseconds outside the clock itself (PluginHostSupport) and these boundaries. The same
    /// holds in the plugins, stricter: no literal span in nanoseconds (`_000_000`) and no raw
    /// nanoseconds at all, except where PluginExport reads the ABI's `deadline_ns`/`hold_until_ns`.
    @Test func theEngineCountsTimeInInstantsAndDurations() {
        let boundaries = [
            "ReportStore.swift": "st_mtim",  // report files' wall-clock mtimes, as a sort key
            "HTTPConnection.swift": "shimDeadline(_ deadline",  // the TLS shim counts CLOCK_MONOTONIC ms
            "PluginWorkerProcess.swift": "nowCallback",  // the plugin ABI's clock: raw ns
            "PluginExport.swift": "abiNanoseconds",  // the plugin ABI's deadlines: raw ns, 0 for none
        ]
        let engine = ["PluginHost", "PluginHostCLI", "PluginHostSession", "PluginHostGroup", "PluginHostWorker"]
        // PluginKit and the bundled plugins' targets (ShellQuiesce, MySQLQuiesce, PostgreSQLQuiesce
        // and their entry points), by directory under Sources.
        let plugins = ["PluginKit", "Plugins"]
        for target in engine + plugins {
            for (path, text) in Self.files(in: target) {
                let name = String(path.split(separator: "/").last ?? "")
                for line in text.split(separator: "\n") {
                    let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    let raw = code.contains("Monotonic.now()") || code.contains("Monotonic.milliseconds(")
                    var conversion = ["1_000_000", "1e9", "1e6"].contains { code.contains($0) }
                    if plugins.contains(target) {
                        conversion = conversion || ["_000_000", "nanoseconds"].contains { code.contains($0) }
                    }
                    guard raw || conversion else { continue }
                    if let allowed = boundaries[name], code.contains(allowed) { continue }
                    Issue.record("\(path): \(line)")
                }
            }
        }
        #expect(Self.files(in: "Plugins").contains { $0.path.hasSuffix("/MySQL/Quiesce/CallBudget.swift") })
    }

    @Test func aDirectSystemCallIsFound() {
        #expect(Self.directSystemCall(in: "let ready = poll(&fds, 1, -1)") != nil)
        #expect(Self.directSystemCall(in: "guard let handle = opendir(path) else { return }") != nil)
        #expect(Self.directSystemCall(in: "_ = Glibc.send(fd, base, count, 0)") != nil)
        #expect(Self.directSystemCall(in: "let ready = try Poll.wait(&fds, until: deadline)") == nil)
        #expect(Self.directSystemCall(in: "public func accept(operationID: String) -> Bool {") == nil)
        #expect(Self.directSystemCall(in: "/// poll(2) on every descriptor") == nil)
    }

    /// Lines kept readable: swift-format wraps code at 120 columns but cannot break a string
    /// literal, so a long message is split by hand (a `\` continuation in a multi-line literal).
    /// No line of any Swift file under Sources is over 140 characters.
    @Test func noSourceLineIsLongerThan140Characters() {
        let files = Self.files(in: "")
        #expect(files.contains { $0.path.hasSuffix("/PluginHost/Errors/ErrorCode.swift") })
        #expect(files.contains { $0.path.hasSuffix("/Plugins/MySQL/Quiesce/MySQLPlugin.swift") })
        for (path, text) in files {
            let name = "Sources/" + path.dropFirst(Self.sources.count).drop { $0 == "/" }
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where line.count > 140 {
                Issue.record("\(name):\(index + 1) is \(line.count) characters long (at most 140)")
            }
        }
    }

    @Test func onlyTheSessionRuntimeRewiresStdio() {
        for target in Self.targets where target != "PluginHostSession" {
            for (path, text) in Self.files(in: target) {
                #expect(!text.contains("dup2("), "\(path) rewires stdio")
            }
        }
    }
}

extension String {
    fileprivate var withLeadingSlash: String { hasPrefix("/") ? self : "/" + self }
}
