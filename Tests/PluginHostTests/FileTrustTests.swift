import Glibc
import PluginHostSupport
import Testing

@testable import PluginHost
@testable import PluginHostSupport

/// A fresh directory under /tmp with real files, owners and modes; removed when released.
/// Everything created is recorded and removed in reverse order.
private final class Scratch {
    /// The directory's real path (mkdtemp under /tmp, then chmod 0755).
    let path: String
    private var created: [(path: String, isDirectory: Bool)] = []

    init() throws {
        var template = Array("/tmp/pluginhost-unit-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> String? in
            guard let result = mkdtemp(buffer.baseAddress!) else { return nil }
            return String(cString: result)
        }
        guard let made else { throw SystemError("mkdtemp") }
        guard let resolved = realpath(made, nil) else { throw SystemError("realpath") }
        path = String(cString: resolved)
        free(resolved)
        guard chmod(path, 0o755) == 0 else { throw SystemError("chmod") }
    }

    deinit {
        for entry in created.reversed() {
            _ = entry.isDirectory ? rmdir(entry.path) : unlink(entry.path)
        }
        _ = rmdir(path)
    }

    func at(_ name: String) -> String { "\(path)/\(name)" }

    /// A regular file with exactly `mode` (umask does not apply) and owner `uid`.
    @discardableResult
    func file(
        _ name: String, mode: mode_t, contents: String = "#!/bin/sh\nexit 0\n", uid: uid_t = 0,
        gid: gid_t = 0
    ) throws -> String {
        try file(name, mode: mode, bytes: Array(contents.utf8), uid: uid, gid: gid)
    }

    @discardableResult
    func file(_ name: String, mode: mode_t, bytes: [UInt8], uid: uid_t = 0, gid: gid_t = 0) throws -> String {
        let target = at(name)
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("open \(target)") }
        created.append((target, false))
        defer { _ = close(fd) }
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { throw SystemError("write") }
            written += count
        }
        guard fchown(fd, uid, gid) == 0 else { throw SystemError("fchown") }
        guard fchmod(fd, mode) == 0 else { throw SystemError("fchmod") }
        return target
    }

    @discardableResult
    func directory(_ name: String, mode: mode_t = 0o755, uid: uid_t = 0) throws -> String {
        let target = at(name)
        guard mkdir(target, 0o700) == 0 else { throw SystemError("mkdir \(target)") }
        created.append((target, true))
        guard chown(target, uid, 0) == 0 else { throw SystemError("chown") }
        guard chmod(target, mode) == 0 else { throw SystemError("chmod") }
        return target
    }

    @discardableResult
    func symlink(_ name: String, to destination: String) throws -> String {
        let target = at(name)
        guard Glibc.symlink(destination, target) == 0 else { throw SystemError("symlink \(target)") }
        created.append((target, false))
        return target
    }

    @discardableResult
    func fifo(_ name: String) throws -> String {
        let target = at(name)
        guard mkfifo(target, 0o600) == 0 else { throw SystemError("mkfifo \(target)") }
        created.append((target, false))
        return target
    }

    func chmodTo(_ name: String, _ mode: mode_t) throws {
        guard chmod(at(name), mode) == 0 else { throw SystemError("chmod") }
    }
}

private func verify(_ path: String, _ rule: FileTrust.Rule) -> Result<String, FileTrust.Failure> {
    FileTrust.verify(path, rule: rule)
}

private let validConfig = """
    {
        "pluginName" : "ScriptRunner",
        "preScriptLocation" : "/etc/azure/prescript.sh",
        "postScriptLocation" : "/etc/azure/postscript.sh",
        "preScriptParams" : ["", ""],
        "postScriptParams" : ["", ""],
        "preScriptNoOfRetries" : 0,
        "postScriptNoOfRetries" : 0,
        "timeoutInSeconds" : 30,
        "continueBackupOnFailure" : true,
        "fsFreezeEnabled" : true
    }
    """

private func pathIsAbsent(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) != 0 && errno == ENOENT
}

/// The config file's permission rules (README, "The config file"), on real files. Runs as root only (owners are changed with chown).
@Suite("FileTrust", .enabled(if: geteuid() == 0, "needs root to create root- and nobody-owned files"))
struct FileTrustTests {
    static let nobody: uid_t = 65534
    static let scriptModes = "0700, 0500, 0600 or 0400 (nothing for group or other)"

    // MARK: - Accepted

    /// Azure's `validate_permissions` checks only the group and other digits: 600 and 400 run
    /// there (through sh), and so here; 000 too (root reads it anyway, sh runs it).
    @Test(arguments: [0o700, 0o500, 0o600, 0o400, 0o100, 0o000] as [mode_t])
    func rootScriptWithOwnerOnlyModeIsAccepted(mode: mode_t) throws {
        let scratch = try Scratch()
        let script = try scratch.file("pre.sh", mode: mode)
        #expect(verify(script, .script) == .success(script))
    }

    @Test(arguments: [0o600, 0o400] as [mode_t])
    func rootConfigWithOwnerOnlyModeIsAccepted(mode: mode_t) throws {
        let scratch = try Scratch()
        let config = try scratch.file("config.json", mode: mode, contents: validConfig)
        #expect(verify(config, .configFile) == .success(config))
    }

    @Test func groupOwnerDoesNotMatterWithoutGroupBits() throws {
        let scratch = try Scratch()
        let script = try scratch.file("pre.sh", mode: 0o700, gid: 65534)
        #expect(verify(script, .script) == .success(script))
    }

    @Test func theTemporaryDirectoryItselfIsTrusted() throws {
        let scratch = try Scratch()
        #expect(FileTrust.checkDirectories(above: scratch.at("x")) == nil)
    }

    // MARK: - Refused modes and owners

    @Test(
        arguments: [0o755, 0o750, 0o705, 0o770, 0o777, 0o701, 0o710, 0o711, 0o640, 0o604, 0o440, 0o644, 0o720, 0o702]
            as [mode_t])
    func scriptWithWrongModeIsRefused(mode: mode_t) throws {
        let scratch = try Scratch()
        let script = try scratch.file("pre.sh", mode: mode)
        let result = verify(script, .script)
        #expect(result == .failure(.unsafeMode(path: script, mode: mode, expected: Self.scriptModes)))
        if case .failure(let failure) = result {
            #expect(failure.description == "\(script) has mode \(octal(mode)); expected \(Self.scriptModes)")
            #expect(!failure.isMissing)
        }
    }

    @Test(
        arguments: [0o644, 0o640, 0o604, 0o660, 0o666, 0o700, 0o500, 0o610, 0o601, 0o744, 0o620, 0o602]
            as [mode_t])
    func configWithWrongModeIsRefused(mode: mode_t) throws {
        let scratch = try Scratch()
        let config = try scratch.file("config.json", mode: mode, contents: validConfig)
        #expect(
            verify(config, .configFile) == .failure(.unsafeMode(path: config, mode: mode, expected: "0600 or 0400")))
    }

    @Test func scriptOwnedByNobodyIsRefused() throws {
        let scratch = try Scratch()
        let script = try scratch.file("pre.sh", mode: 0o700, uid: Self.nobody, gid: 65534)
        let result = verify(script, .script)
        #expect(result == .failure(.wrongOwner(path: script, uid: Self.nobody)))
        if case .failure(let failure) = result {
            #expect(failure.description.contains("owned by uid 65534"))
            #expect(failure.description.contains("must be owned by root"))
        }
    }

    @Test func configOwnedByNobodyIsRefused() throws {
        let scratch = try Scratch()
        let config = try scratch.file("config.json", mode: 0o600, contents: validConfig, uid: Self.nobody)
        #expect(verify(config, .configFile) == .failure(.wrongOwner(path: config, uid: Self.nobody)))
    }

    @Test func directoryIsNotARegularFile() throws {
        let scratch = try Scratch()
        let directory = try scratch.directory("pre.sh", mode: 0o700)
        #expect(verify(directory, .script) == .failure(.notRegularFile(path: directory)))
        #expect(verify(directory, .configFile) == .failure(.notRegularFile(path: directory)))
    }

    @Test func fifoIsNotARegularFile() throws {
        let scratch = try Scratch()
        let fifo = try scratch.fifo("config.json")
        #expect(verify(fifo, .configFile) == .failure(.notRegularFile(path: fifo)))
        #expect(verify(fifo, .script) == .failure(.notRegularFile(path: fifo)))
    }

    // MARK: - Missing files and symlinks

    @Test func missingFileAndDanglingSymlinkAreDistinct() throws {
        let scratch = try Scratch()
        let missing = scratch.at("missing.sh")
        let dangling = try scratch.symlink("dangling.sh", to: scratch.at("nowhere.sh"))

        let missingResult = verify(missing, .script)
        let danglingResult = verify(dangling, .script)
        #expect(missingResult == .failure(.missing(path: missing)))
        #expect(danglingResult == .failure(.danglingSymlink(path: dangling)))
        #expect(missingResult != danglingResult)
        if case .failure(let failure) = missingResult {
            #expect(failure.isMissing)
            #expect(failure.description == "\(missing) does not exist")
        }
        if case .failure(let failure) = danglingResult {
            #expect(!failure.isMissing)
            #expect(failure.description.contains("symlink to a file that does not exist"))
        }
    }

    @Test func missingDirectoryOnTheWayIsMissing() throws {
        let scratch = try Scratch()
        let path = scratch.at("no/such/dir/pre.sh")
        #expect(verify(path, .script) == .failure(.missing(path: path)))
    }

    @Test func symlinkToAGoodFileIsAcceptedAndResolved() throws {
        let scratch = try Scratch()
        try scratch.directory("real")
        let real = try scratch.file("real/pre.sh", mode: 0o700)
        let absolute = try scratch.symlink("absolute.sh", to: real)
        let relative = try scratch.symlink("relative.sh", to: "real/pre.sh")
        let chained = try scratch.symlink("chained.sh", to: "relative.sh")
        let throughDirectory = try scratch.symlink("linkdir", to: "real")
        #expect(verify(absolute, .script) == .success(real))
        #expect(verify(relative, .script) == .success(real))
        #expect(verify(chained, .script) == .success(real))
        #expect(verify("\(throughDirectory)/pre.sh", .script) == .success(real))
        #expect(verify(scratch.at("real/../real/./pre.sh"), .script) == .success(real))
    }

    @Test func symlinkToABadFileIsCheckedOnTheRealFile() throws {
        let scratch = try Scratch()
        let real = try scratch.file("real.sh", mode: 0o755)
        let link = try scratch.symlink("link.sh", to: real)
        #expect(verify(link, .script) == .failure(.unsafeMode(path: real, mode: 0o755, expected: Self.scriptModes)))

        let nobodys = try scratch.file("nobody.sh", mode: 0o700, uid: Self.nobody)
        let link2 = try scratch.symlink("link2.sh", to: nobodys)
        #expect(verify(link2, .script) == .failure(.wrongOwner(path: nobodys, uid: Self.nobody)))
    }

    @Test func symlinkLoopIsUnreadableNotMissing() throws {
        let scratch = try Scratch()
        let a = try scratch.symlink("a", to: "b")
        try scratch.symlink("b", to: "a")
        let result = verify(a, .script)
        guard case .failure(.unreadable(let path, let error)) = result else {
            Issue.record("expected unreadable, got \(result)")
            return
        }
        #expect(path == a)
        #expect(error.errno == ELOOP)
    }

    // MARK: - Directories above the file

    @Test func parentOwnedByNobodyIsRefused() throws {
        let scratch = try Scratch()
        let directory = try scratch.directory("scripts", mode: 0o755, uid: Self.nobody)
        try scratch.file("scripts/pre.sh", mode: 0o700)
        let result = verify(scratch.at("scripts/pre.sh"), .script)
        #expect(result == .failure(.unsafeDirectory(path: directory, uid: Self.nobody, mode: 0o755)))
        if case .failure(let failure) = result {
            #expect(failure.description.contains("directory \(directory) is owned by uid 65534"))
        }
    }

    @Test(arguments: [0o777, 0o775, 0o757, 0o770, 0o707, 0o722] as [mode_t])
    func parentWritableByOthersWithoutStickyBitIsRefused(mode: mode_t) throws {
        let scratch = try Scratch()
        let directory = try scratch.directory("scripts", mode: mode)
        try scratch.file("scripts/pre.sh", mode: 0o700)
        let result = verify(scratch.at("scripts/pre.sh"), .script)
        #expect(result == .failure(.unsafeDirectory(path: directory, uid: 0, mode: mode)))
        if case .failure(let failure) = result {
            #expect(failure.description.contains("writable by group or other without the sticky bit"))
        }
    }

    @Test(arguments: [0o1777, 0o1775, 0o1757] as [mode_t])
    func parentWritableByOthersWithStickyBitIsAccepted(mode: mode_t) throws {
        let scratch = try Scratch()
        try scratch.directory("shared", mode: mode)
        let script = try scratch.file("shared/pre.sh", mode: 0o700)
        #expect(verify(script, .script) == .success(script))
    }

    @Test(arguments: [0o700, 0o711, 0o755, 0o555, 0o500] as [mode_t])
    func parentNotWritableByOthersIsAccepted(mode: mode_t) throws {
        let scratch = try Scratch()
        try scratch.directory("scripts", mode: 0o755)
        let script = try scratch.file("scripts/pre.sh", mode: 0o700)
        try scratch.chmodTo("scripts", mode)
        #expect(verify(script, .script) == .success(script))
    }

    @Test func everyDirectoryUpToTheRootIsChecked() throws {
        let scratch = try Scratch()
        let top = try scratch.directory("a", mode: 0o755)
        try scratch.directory("a/b", mode: 0o755)
        try scratch.directory("a/b/c", mode: 0o755)
        let script = try scratch.file("a/b/c/pre.sh", mode: 0o700)
        #expect(verify(script, .script) == .success(script))

        try scratch.chmodTo("a", 0o777)
        #expect(verify(script, .script) == .failure(.unsafeDirectory(path: top, uid: 0, mode: 0o777)))
        try scratch.chmodTo("a", 0o755)

        // The scratch directory itself, right under /tmp.
        _ = chmod(scratch.path, 0o777)
        #expect(verify(script, .script) == .failure(.unsafeDirectory(path: scratch.path, uid: 0, mode: 0o777)))
        _ = chmod(scratch.path, 0o755)
        #expect(verify(script, .script) == .success(script))
    }

    @Test func directoriesOfTheRealFileAreCheckedNotOfTheLink() throws {
        let scratch = try Scratch()
        let unsafe = try scratch.directory("unsafe", mode: 0o777)
        let real = try scratch.file("unsafe/pre.sh", mode: 0o700)
        try scratch.directory("safe", mode: 0o755)
        let link = try scratch.symlink("safe/pre.sh", to: real)
        #expect(verify(link, .script) == .failure(.unsafeDirectory(path: unsafe, uid: 0, mode: 0o777)))
    }

    @Test func parentOfPaths() {
        #expect(FileTrust.parent(of: "/a/b/c") == "/a/b")
        #expect(FileTrust.parent(of: "/a") == "/")
        #expect(FileTrust.parent(of: "/") == "/")
    }

    // MARK: - Checking an opened descriptor

    @Test func checkOfAnOpenedFileAgreesWithVerify() throws {
        let scratch = try Scratch()
        let good = try scratch.file("good.json", mode: 0o600, contents: validConfig)
        let bad = try scratch.file("bad.json", mode: 0o644, contents: validConfig)
        let goodStatus = try FileDescriptor.open(good, O_RDONLY).status()
        let badStatus = try FileDescriptor.open(bad, O_RDONLY).status()
        #expect(FileTrust.check(goodStatus, of: good, rule: .configFile) == nil)
        #expect(
            FileTrust.check(badStatus, of: bad, rule: .configFile)
                == .unsafeMode(path: bad, mode: 0o644, expected: "0600 or 0400"))
        #expect(FileTrust.check(badStatus, of: bad, rule: .readOnlyForOthers) == nil)
    }

    @Test func readOnlyForOthersRule() throws {
        let scratch = try Scratch()
        let readable = try scratch.file("a.json", mode: 0o644, contents: "{}")
        let groupWritable = try scratch.file("b.json", mode: 0o664, contents: "{}")
        let otherWritable = try scratch.file("c.json", mode: 0o646, contents: "{}")
        #expect(verify(readable, .readOnlyForOthers) == .success(readable))
        #expect(
            verify(groupWritable, .readOnlyForOthers)
                == .failure(
                    .unsafeMode(path: groupWritable, mode: 0o664, expected: "no group or other write bit, e.g. 0644")))
        #expect(
            verify(otherWritable, .readOnlyForOthers)
                == .failure(
                    .unsafeMode(path: otherWritable, mode: 0o646, expected: "no group or other write bit, e.g. 0644")))
    }
}

/// Loading the Azure config file and the host config from real files.
@Suite("ConfigLoader", .enabled(if: geteuid() == 0, "needs root to create root-owned files"))
struct ConfigLoaderTests {
    private static func failure(
        _ result: Result<ConfigLoader.Outcome, HostError>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> HostError? {
        switch result {
        case .failure(let error): return error
        case .success(let outcome):
            Issue.record("expected a failure, got \(outcome)", sourceLocation: sourceLocation)
            return nil
        }
    }

    @Test(.enabled(if: pathIsAbsent(ScriptConfig.defaultPath), "the default config file exists on this machine"))
    func missingDefaultFileMeansScriptsOff() {
        let result = ConfigLoader.load(explicitPath: nil)
        guard case .success(.absent) = result else {
            Issue.record("expected .absent, got \(result)")
            return
        }
    }

    @Test func missingExplicitFileIsAnError() throws {
        let scratch = try Scratch()
        let path = scratch.at("VMSnapshotScriptPluginConfig.json")
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("does not exist") == true)
    }

    @Test func danglingExplicitSymlinkIsAnError() throws {
        let scratch = try Scratch()
        let link = try scratch.symlink("config.json", to: scratch.at("gone.json"))
        let error = Self.failure(ConfigLoader.load(explicitPath: link))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("symlink") == true)
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o666, 0o700, 0o755] as [mode_t])
    func configWithUnsafeModeIsAnError(mode: mode_t) throws {
        let scratch = try Scratch()
        let path = try scratch.file("config.json", mode: mode, contents: validConfig)
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains(octal(mode)) == true)
        #expect(error?.message.contains("0600 or 0400") == true)
    }

    @Test func configOwnedByNobodyIsAnError() throws {
        let scratch = try Scratch()
        let path = try scratch.file("config.json", mode: 0o600, contents: validConfig, uid: 65534)
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("uid 65534") == true)
    }

    @Test func configInAnUnsafeDirectoryIsAnError() throws {
        let scratch = try Scratch()
        try scratch.directory("azure", mode: 0o777)
        let path = try scratch.file("azure/config.json", mode: 0o600, contents: validConfig)
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("without the sticky bit") == true)
    }

    @Test func configThatIsAFifoIsRefusedWithoutBlocking() throws {
        let scratch = try Scratch()
        let fifo = try scratch.fifo("config.json")
        let error = Self.failure(ConfigLoader.load(explicitPath: fifo))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("not a regular file") == true)
    }

    @Test(arguments: [0o600, 0o400] as [mode_t])
    func goodConfigIsLoaded(mode: mode_t) throws {
        let scratch = try Scratch()
        let path = try scratch.file("config.json", mode: mode, contents: validConfig)
        let result = ConfigLoader.load(explicitPath: path)
        guard case .success(.loaded(let config, let loadedPath, let warnings)) = result else {
            Issue.record("expected a loaded config, got \(result)")
            return
        }
        #expect(loadedPath == path)
        #expect(warnings.isEmpty)
        #expect(config.pluginName == "ScriptRunner")
        #expect(config.preScript.params == ["", ""])
        #expect(config.timeoutSeconds == 30)
    }

    @Test func configThroughASymlinkReportsTheRealPathAndWarnings() throws {
        let scratch = try Scratch()
        let real = try scratch.file(
            "real.json", mode: 0o600,
            contents: validConfig.replacingFirst(
                "\"timeoutInSeconds\" : 30",
                with: "\"timeoutInSeconds\" : 3600"))
        let link = try scratch.symlink("VMSnapshotScriptPluginConfig.json", to: "real.json")
        let result = ConfigLoader.load(explicitPath: link)
        guard case .success(.loaded(let config, let loadedPath, let warnings)) = result else {
            Issue.record("expected a loaded config, got \(result)")
            return
        }
        #expect(loadedPath == real)
        #expect(config.timeoutSeconds == 1800)
        #expect(warnings.count == 1)
    }

    @Test func invalidContentNamesTheFileAndTheProblem() throws {
        let scratch = try Scratch()
        let path = try scratch.file(
            "config.json", mode: 0o600,
            contents: validConfig.replacingFirst("30", with: "\"30\""))
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        // Azure's sentence once, then the file and the field.
        #expect(error?.message.hasPrefix(ErrorCode.incorrectJSONConfigFile.azureMessage! + " \(path): ") == true)
        #expect(error?.message.contains("timeoutInSeconds: expected an integer") == true)
        #expect(error?.step == "checks")
    }

    @Test func syntaxErrorNamesTheFile() throws {
        let scratch = try Scratch()
        let path = try scratch.file("config.json", mode: 0o600, contents: validConfig + ",")
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains(path) == true)
        #expect(error?.message.contains("not valid JSON") == true)
    }

    @Test func emptyFileIsAnError() throws {
        let scratch = try Scratch()
        let path = try scratch.file("config.json", mode: 0o600, contents: "")
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("empty") == true)
    }

    @Test func oversizedFileIsRefused() throws {
        let scratch = try Scratch()
        let bytes = Array("{".utf8) + [UInt8](repeating: 0x20, count: ScriptConfig.maximumFileSize) + Array("}".utf8)
        let path = try scratch.file("config.json", mode: 0o600, bytes: bytes)
        let error = Self.failure(ConfigLoader.load(explicitPath: path))
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(error?.message.contains("larger than \(ScriptConfig.maximumFileSize) bytes") == true)
    }
}

@Suite("HostConfig", .enabled(if: geteuid() == 0, "needs root to create root-owned files"))
struct HostConfigTests {
    @Test(.enabled(if: pathIsAbsent(HostConfig.defaultPath), "the default host config exists on this machine"))
    func missingDefaultFileIsAnEmptyConfig() {
        #expect(HostConfig.load(path: nil) == .success(HostConfig()))
    }

    @Test func missingExplicitFileIsAnError() throws {
        let scratch = try Scratch()
        let path = scratch.at("pluginhost.json")
        guard case .failure(let error) = HostConfig.load(path: path) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .incorrectPluginhostFile)
        #expect(error.message.contains("does not exist"))
    }

    @Test(arguments: [0o644, 0o600, 0o444, 0o400] as [mode_t])
    func goodFileIsLoaded(mode: mode_t) throws {
        let scratch = try Scratch()
        let path = try scratch.file(
            "pluginhost.json", mode: mode,
            contents: """
                { "mounts": ["/data", "/"], "skipMounts": ["/scratch"], "maxFrozenSeconds": 30, "keepReports": 200 }
                """)
        #expect(
            HostConfig.load(path: path)
                == .success(
                    HostConfig(
                        mounts: ["/data", "/"], skipMounts: ["/scratch"], maxFrozenSeconds: 30, keepReports: 200)))
    }

    @Test(arguments: [0o664, 0o646, 0o666, 0o622] as [mode_t])
    func writableByOthersIsAnError(mode: mode_t) throws {
        let scratch = try Scratch()
        let path = try scratch.file("pluginhost.json", mode: mode, contents: "{}")
        guard case .failure(let error) = HostConfig.load(path: path) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.code == .incorrectPluginhostFile)
        #expect(error.message.contains(octal(mode)))
    }

    @Test(arguments: [
        #"{"mounts": ["data"]}"#,
        #"{"mounts": "/data"}"#,
        #"{"skipMounts": [null]}"#,
        #"{"maxFrozenSeconds": 0}"#,
        #"{"maxFrozenSeconds": 601}"#,
        #"{"maxFrozenSeconds": "60"}"#,
        #"{"keepReports": 0}"#,
        #"{"keepReports": 10001}"#,
        #"{"keepReports": 5.0}"#,
        #"{"keepReports": "50"}"#,
        #"{"unknown": 1}"#,
        #"["/data"]"#,
        #"{"mounts": ["/data"],}"#,
    ])
    func invalidContentIsAnError(text: String) throws {
        let scratch = try Scratch()
        let path = try scratch.file("pluginhost.json", mode: 0o644, contents: text)
        guard case .failure(let error) = HostConfig.load(path: path) else {
            Issue.record("expected a failure for \(text)")
            return
        }
        #expect(error.code == .incorrectPluginhostFile)
        #expect(error.message.contains(path))
    }
}
