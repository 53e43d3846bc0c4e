import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// What is loaded is byte for byte what was hashed: the verified library is a sealed copy in
/// memory, not a descriptor of a file that can still be rewritten in place.
@Suite("Sealed plugin libraries", .serialized, .enabled(if: isRoot, "needs root-owned files"))
struct SealedLibraryTests {
    func inode(_ path: String) -> ino_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_ino : 0
    }

    @Test func anInPlaceOverwriteAfterVerificationChangesNothingThatIsLoaded() throws {
        let host = HostSandbox()
        let good = try fixturePlugin("GOOD", in: host.libraryDirectory, name: "victim")
        let evil = try fixturePlugin("GOOD", in: host.libraryDirectory, name: "evil")
        let verified = try PluginVerifier.verifyLibrary(good, expectedSHA256: host.sha256(good)).get()
        let before = inode(good)
        #expect(sh("cp '\(evil)' '\(good)'") == 0)
        #expect(inode(good) == before, "cp must overwrite in place (same inode) for this test to mean anything")
        #expect(host.sha256(good) != verified.sha256)

        // The descriptor the worker loads still holds the verified bytes…
        let loaded = try FileDescriptor.open("/proc/self/fd/\(verified.descriptor.rawValue)", O_RDONLY)
        #expect(PluginVerifier.sha256(of: loaded) == verified.sha256)
        // …and nobody can change them: writes, truncation and growth are refused by the seals.
        #expect(SealedFile.isSealed(verified.descriptor.rawValue))
        var byte: UInt8 = 0x42
        #expect(pwrite(verified.descriptor.rawValue, &byte, 1, 0) < 0 && errno == EPERM)
        #expect(ftruncate(verified.descriptor.rawValue, 10) != 0)
        #expect(ftruncate(verified.descriptor.rawValue, off_t(verified.size + 4096)) != 0)
    }

    /// The measured attack: a plugin's library is overwritten in place (`cp evil.so
    /// lib.so`, same inode) after it was hashed, while the next, large library is being hashed.
    /// Before the fix the worker then loaded evil.so and the report showed the verified
    /// checksum. Now the verified code runs (or the plugin is refused), never evil.so.
    @Test func overwritingALibraryWhileAnotherIsHashedNeverRunsTheNewCode() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let log = host.scratch.path + "/calls.log"
        let victim = try fixturePlugin("GOOD", in: host.libraryDirectory, name: "victim")
        let pristine = host.libraryDirectory + "/victim.orig"
        sh("cp '\(victim)' '\(pristine)'")
        let evil = try fixturePlugin("GOOD", in: host.libraryDirectory, name: "evil")
        host.writeManifest(
            "10-victim.json",
            """
            {"name": "victim", "library": "\(victim)", "sha256": "\(host.sha256(victim))", "config": {"log": "\(log)"}}
            """)
        let verifiedSHA256 = host.sha256(victim)
        // Large enough (but under the size limit) that copying and hashing it takes a while; its
        // checksum is wrong on purpose (it is refused once hashed: only the time it takes matters).
        let big = host.libraryDirectory + "/libbig.so"
        #expect(sh("head -c 250000000 /dev/urandom > '\(big)' && chmod 0644 '\(big)'") == 0)
        host.writeManifest(
            "20-big.json",
            "{\"name\": \"big\", \"library\": \"\(big)\", \"sha256\": \"\(String(repeating: "0", count: 64))\"}")

        var overwrittenWhileHashing = 0
        for _ in 0..<5 where overwrittenWhileHashing == 0 {
            sh("cp '\(pristine)' '\(victim)'; rm -f '\(log)'")
            let running = host.start([
                "check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json",
            ])
            // Wait until the host has the big library open, i.e. the victim was verified and the
            // big one is being read; then overwrite the victim in place.
            while processExists(running.pid) {
                if openFiles(of: running.pid).contains(big) {
                    sh("cp '\(evil)' '\(victim)'")
                    overwrittenWhileHashing += 1
                    break
                }
                usleep(500)
            }
            let result = running.finish()
            let calls = host.scratch.read("calls.log")
            #expect(!calls.contains("evil"), "the overwritten library's code ran: \(calls)")
            #expect(result.stdout.contains("\"victim\""), "\(result.stdout.prefix(2000)) \(result.stderr.suffix(500))")
            if overwrittenWhileHashing > 0 {
                // The verified code ran, and the report names the checksum of what ran.
                #expect(calls.contains("victim create") && calls.contains("victim check"), "\(calls)")
                #expect(result.stdout.contains(verifiedSHA256))
            }
        }
        #expect(overwrittenWhileHashing > 0, "never caught the host while it hashed the big library")
    }

    /// The targets of /proc/PID/fd/*.
    func openFiles(of pid: Int32) -> [String] {
        guard let directory = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(directory) }
        var targets: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            var buffer = [CChar](repeating: 0, count: 4096)
            let count = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count - 1)
            if count > 0 {
                targets.append(String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        return targets
    }
}
