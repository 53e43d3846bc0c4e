import CPluginHostShim
import Glibc

/// A copy of a file in a sealed memfd: once made, nobody — not root, not this process — can
/// change its bytes or its size (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
/// Loading `/proc/self/fd/N` of it (the worker does) loads exactly the bytes that were copied, whatever happens
/// to the file it came from (an in-place `cp evil.so lib.so` keeps the inode and changes the
/// bytes under every descriptor of the file, so a descriptor of the file itself is not enough).
public enum SealedFile {
    /// Bytes read, shown to `consume` and written at a time: small enough to stay in the CPU's
    /// cache between the three.
    static let chunkSize = 1 << 20

    /// Copies `source` from offset 0 — `size` bytes, or fewer if it shrank meanwhile — into a
    /// new memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), then seals it. Each chunk is read into a
    /// buffer private to this call, shown to `consume`, then written to the memfd whole: what
    /// `consume` hashes is exactly what the memfd holds, and, once sealed, will ever hold
    /// (nothing else can reach the memfd before the seal). One read of the file, one write of
    /// the copy, each chunk hashed while it is still in the cache.
    public static func copy(
        of source: FileDescriptor, size: Int, name: String,
        consume: (UnsafeRawBufferPointer) -> Void
    ) throws(SystemError) -> FileDescriptor {
        let fd = ph_memfd_create_sealable(name)
        guard fd >= 0 else { throw SystemError("memfd_create") }
        let memory = FileDescriptor(owning: fd)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        var copied = 0
        while copied < size {
            let count = pread(source.rawValue, buffer.baseAddress, min(chunkSize, size - copied), off_t(copied))
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemError("pread")
            }
            if count == 0 { break }  // it shrank while being read: keep what was read
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            consume(chunk)
            var written = 0
            while written < count {
                let n = pwrite(fd, chunk.baseAddress! + written, count - written, off_t(copied + written))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("pwrite")
                }
                written += n
            }
            copied += count
        }
        guard ph_memfd_seal(fd) == 0 else { throw SystemError("fcntl F_ADD_SEALS") }
        return memory
    }

    /// True when `descriptor` is a memfd whose contents and size can no longer change.
    public static func isSealed(_ descriptor: Int32) -> Bool {
        ph_memfd_is_sealed(descriptor) == 1
    }
}
