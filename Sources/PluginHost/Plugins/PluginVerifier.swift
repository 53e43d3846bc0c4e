import Crypto
import Glibc
public import PluginHostSupport
public import PluginHostWire

/// Why a plugin is refused: the check that failed and what it found. Reported as
/// `IncorrectPluginhostFile` naming the plugin and the check.

/// A library file that passed every check the host can make without loading it. The
/// descriptor is the one that was hashed; the worker loads exactly it (`/proc/self/fd/3`).
public final class VerifiedLibrary: Sendable {
    public let path: String
    public let descriptor: FileDescriptor
    public let sha256: String

    init(path: String, descriptor: FileDescriptor, sha256: String) {
        self.path = path
        self.descriptor = descriptor
        self.sha256 = sha256
    }
}

/// Integrity before load (README, "Plugins"): manifest and library owned by root and not writable by
/// group or other, every directory above them too, symlinks resolved and the real file
/// checked, the library's SHA-256 equal to the manifest's — computed from the descriptor that
/// will be loaded, so a path swapped between check and load changes nothing.
public enum PluginVerifier {
    public static func readManifest(_ path: String) -> Result<PluginManifest, PluginRefusal> {
        let real: String
        switch FileTrust.verify(path, rule: .readOnlyForOthers) {
        case .success(let resolved): real = resolved
        case .failure(let failure): return .failure(PluginRefusal(.manifest, "\(failure)"))
        }
        do {
            let file = try FileDescriptor.open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            if let failure = FileTrust.check(try file.status(), of: real, rule: .readOnlyForOthers) {
                return .failure(PluginRefusal(.manifest, "\(failure)"))
            }
            let bytes = try file.readAll(limit: 1 << 20)
            return .success(try PluginManifest.parse(bytes, path: real))
        } catch let error as ManifestError {
            return .failure(PluginRefusal(.manifest, "\(real): \(error.message)"))
        } catch {
            return .failure(PluginRefusal(.manifest, "\(real) cannot be read (\(error))"))
        }
    }

    public static func verifyLibrary(_ path: String, expectedSHA256: String?) -> Result<VerifiedLibrary, PluginRefusal> {
        let real: String
        switch FileTrust.verify(path, rule: .readOnlyForOthers) {
        case .success(let resolved): real = resolved
        case .failure(let failure): return .failure(PluginRefusal(.library, "\(failure)"))
        }
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            if let failure = FileTrust.check(try file.status(), of: real, rule: .readOnlyForOthers) {
                return .failure(PluginRefusal(.library, "\(failure)"))
            }
        } catch {
            return .failure(PluginRefusal(.library, "\(real) cannot be opened (\(error))"))
        }
        guard let digest = sha256(of: file) else {
            return .failure(PluginRefusal(.library, "\(real) cannot be read (\(SystemError("pread")))"))
        }
        if let expectedSHA256, digest != expectedSHA256 {
            return .failure(PluginRefusal(.checksum, "\(real) has SHA-256 \(digest), the manifest says \(expectedSHA256): the library changed after the manifest was written (reinstall it, or write the manifest again with `pluginhost plugin add`)"))
        }
        if let problem = elfProblem(file) {
            return .failure(PluginRefusal(.elf, "\(real) \(problem)"))
        }
        return .success(VerifiedLibrary(path: real, descriptor: file, sha256: digest))
    }

    /// Checks the ELF header before anything maps the file: a 64-bit little-endian shared
    /// object whose program and section header tables lie inside the file (a truncated library
    /// would otherwise crash the loader with SIGBUS).
    static func elfProblem(_ file: FileDescriptor) -> String? {
        var header = [UInt8](repeating: 0, count: 64)
        guard pread(file.rawValue, &header, 64, 0) == 64, header[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else {
            return "is not an ELF shared library"
        }
        guard header[4] == 2, header[5] == 1 else { return "is not a 64-bit little-endian ELF file" }
        func integer(_ offset: Int, _ size: Int) -> UInt64 {
            (0..<size).reduce(0) { $0 | UInt64(header[offset + $1]) << (8 * UInt64($1)) }
        }
        guard integer(16, 2) == 3 else { return "is an ELF file but not a shared object (e_type \(integer(16, 2)))" }
        guard let size = try? file.status().st_size else { return "cannot be measured" }
        let programEnd = integer(0x20, 8) + integer(0x36, 2) * integer(0x38, 2)
        let sectionEnd = integer(0x28, 8) + integer(0x3A, 2) * integer(0x3C, 2)
        let needed = max(programEnd, sectionEnd)
        if needed > UInt64(size) {
            return "is truncated: its headers reach byte \(needed), the file has \(size) bytes"
        }
        return nil
    }

    /// SHA-256 of everything in the file, read with pread from offset 0, in lower-case hex.
    public static func sha256(of file: FileDescriptor) -> String? {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, $0.count, offset) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += off_t(count)
        }
        return hasher.finalize().map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
