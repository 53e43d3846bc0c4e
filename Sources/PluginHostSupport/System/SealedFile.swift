import CPluginHostShim
public import Glibc

/// A copy of a file in a sealed memfd: once made, nobody — not root, not this process — can
/// change its bytes or its size (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`).
/// Loading `/proc/self/fd/N` of it (the worker does) loads exactly the bytes that were copied, whatever happens
/// to the file it came from (an in-place `cp evil.so lib.so` keeps the inode and changes the
/// bytes under every descriptor of the file, so a descriptor of the file itself is not enough).
public enum SealedFile {
    /// Bytes copied (and shown to `consume`) per read.
    static let chunkSize = 1 << 20

    /// Copies `source` from offset 0 — `size` bytes, or fewer if it shrank meanwhile — into a
    /// new memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), then seals it. `consume` sees every
    /// copied chunk, in order, in the memfd's own memory (a shared mapping of it), so what it
    /// hashes is what the memfd holds; nothing else can reach the memfd before the seal.
    public static func copy(of source: FileDescriptor, size: Int, name: String,
                            consume: (UnsafeRawBufferPointer) -> Void) throws(SystemError) -> FileDescriptor {
        let fd = ph_memfd_create_sealable(name)
        guard fd >= 0 else { throw SystemError("memfd_create") }
        let memory = FileDescriptor(owning: fd)
        var copied = 0
        if size > 0 {
            guard ftruncate(fd, off_t(size)) == 0 else { throw SystemError("ftruncate") }
            guard let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0),
                  mapping != MAP_FAILED else { throw SystemError("mmap") }
            // A writable shared mapping keeps F_SEAL_WRITE from being added: always unmap first.
            defer { munmap(mapping, size) }
            while copied < size {
                let count = pread(source.rawValue, mapping + copied, min(chunkSize, size - copied), off_t(copied))
                if count < 0 {
                    if errno == EINTR { continue }
                    throw SystemError("pread")
                }
                if count == 0 { break }  // it shrank while being read: keep what was read
                consume(UnsafeRawBufferPointer(start: mapping + copied, count: count))
                copied += count
            }
        }
        if copied < size {
            guard ftruncate(fd, off_t(copied)) == 0 else { throw SystemError("ftruncate") }
        }
        guard ph_memfd_seal(fd) == 0 else { throw SystemError("fcntl F_ADD_SEALS") }
        return memory
    }

    /// True when `descriptor` is a memfd whose contents and size can no longer change.
    public static func isSealed(_ descriptor: Int32) -> Bool {
        ph_memfd_is_sealed(descriptor) == 1
    }
}
