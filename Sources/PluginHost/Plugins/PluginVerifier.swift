import Crypto
import Glibc
public import PluginHostSupport
public import PluginHostWire

/// Why a plugin is refused: the check that failed and what it found. Reported as
/// `IncorrectPluginhostFile` naming the plugin and the check.

/// A library file that passed every check the host can make without loading it. Its bytes
/// were copied once into a sealed memfd and hashed there: the worker loads exactly that copy
/// (`/proc/self/fd/3`), so what runs is byte for byte what was hashed, whatever happens to the
/// file afterwards (even an in-place overwrite, which keeps the inode).
public final class VerifiedLibrary {
    public let path: String
    /// The sealed memfd holding the library's bytes.
    public let descriptor: FileDescriptor
    public let sha256: String
    public let size: Int

    init(path: String, descriptor: FileDescriptor, sha256: String, size: Int) {
        self.path = path
        self.descriptor = descriptor
        self.sha256 = sha256
        self.size = size
    }
}

/// Integrity before load (README, "Plugins"): manifest and library owned by root and not writable by
/// group or other, every directory above them too, symlinks resolved and the real file
/// checked, the library's SHA-256 equal to the manifest's — computed from the sealed copy that
/// will be loaded, so neither a path swapped nor a file rewritten between check and load
/// changes what runs.
public enum PluginVerifier {
    /// Larger libraries are refused before anything is read: each verified library is held in
    /// memory (a sealed copy) while the operation runs.
    public static let maximumLibraryBytes = 256 << 20

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
            let bytes = try file.readAll(limit: PluginManifest.maximumFileBytes)
            return .success(try PluginManifest.parse(bytes, path: real))
        } catch let error as ManifestError {
            return .failure(PluginRefusal(.manifest, "\(real): \(error.message)"))
        } catch let error as SystemError where error.errno == EFBIG {
            return .failure(
                PluginRefusal(.manifest, "\(real) is larger than \(PluginManifest.maximumFileBytes >> 10) KiB"))
        } catch {
            return .failure(PluginRefusal(.manifest, "\(real) cannot be read (\(error))"))
        }
    }

    public static func verifyLibrary(_ path: String, expectedSHA256: String?) -> Result<VerifiedLibrary, PluginRefusal>
    {
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
        let size: Int
        do {
            size = Int(try file.status().st_size)
        } catch {
            return .failure(PluginRefusal(.library, "\(real) cannot be measured (\(error))"))
        }
        if size > maximumLibraryBytes {
            return .failure(
                PluginRefusal(
                    .library,
                    "\(real) has \(size) bytes; a plugin library may have at most \(maximumLibraryBytes >> 20) MiB"))
        }
        // One read of the file, into memory that can never change again; the hash is of that copy.
        var hasher = SHA256()
        let sealed: FileDescriptor
        do {
            sealed = try SealedFile.copy(of: file, size: size, name: "pluginhost-library") {
                hasher.update(bufferPointer: $0)
            }
        } catch {
            return .failure(PluginRefusal(.library, "\(real) cannot be read (\(error))"))
        }
        file.close()
        let digest = hex(hasher.finalize())
        if let expectedSHA256, digest != expectedSHA256 {
            return .failure(
                PluginRefusal(
                    .checksum,
                    """
                    \(real) has SHA-256 \(digest), the manifest says \(expectedSHA256): the library changed after the \
                    manifest was written (reinstall it, or write the manifest again with `pluginhost plugin add`)
                    """
                ))
        }
        if let problem = elfProblem(sealed) {
            return .failure(PluginRefusal(.elf, "\(real) \(problem)"))
        }
        return .success(VerifiedLibrary(path: real, descriptor: sealed, sha256: digest, size: size))
    }

    /// Checks the ELF header before anything maps the file: a 64-bit little-endian shared
    /// object whose program and section header tables lie inside the file (a truncated library
    /// would otherwise crash the loader with SIGBUS).
    static func elfProblem(_ file: FileDescriptor) -> String? {
        var header = [UInt8](repeating: 0, count: 64)
        guard (try? file.read(into: &header, at: 0)) == 64, header[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else {
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
        var offset = 0
        while true {
            guard let count = try? file.read(into: &buffer, at: offset) else { return nil }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            offset += count
        }
        return hex(hasher.finalize())
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ digest: SHA256.Digest) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(hexDigits[Int(byte >> 4)])
            text.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
