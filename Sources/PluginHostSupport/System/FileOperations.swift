import Glibc

/// File system calls on an owned descriptor, one wrapper per call: the doc names the C call
/// and its EINTR policy.
extension FileDescriptor {
    /// What `lock` asks flock(2) for.
    public enum LockKind: Sendable {
        /// LOCK_EX: nobody else holds any lock.
        case exclusive
        /// LOCK_SH: others may hold shared locks too.
        case shared
    }

    /// flock(2) with LOCK_NB: true when the lock is held now, false when another open file
    /// description holds a conflicting one (EWOULDBLOCK). EINTR is retried.
    public func tryLock(_ kind: LockKind) throws(SystemError) -> Bool {
        let operation = (kind == .exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB
        while true {
            if flock(rawValue, operation) == 0 { return true }
            let error = errno
            if error == EINTR { continue }
            if error == EWOULDBLOCK { return false }
            throw SystemError("flock", errno: error)
        }
    }

    /// flock(2) with LOCK_UN. EINTR is retried.
    public func unlock() throws(SystemError) {
        try retryingInterrupts("flock") { flock(rawValue, LOCK_UN) }
    }

    /// ftruncate(2). EINTR is retried.
    public func truncate(to size: Int) throws(SystemError) {
        try retryingInterrupts("ftruncate") { ftruncate(rawValue, off_t(size)) }
    }

    /// pwrite(2) of all of `bytes` at `offset`, retrying short writes and EINTR.
    public func write(_ bytes: [UInt8], at offset: Int) throws(SystemError) {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes {
                pwrite(rawValue, $0.baseAddress, $0.count, off_t(offset + written))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemError("pwrite")
            }
            if count == 0 { throw SystemError("pwrite", errno: EIO) }
            written += count
        }
    }

    /// pread(2) into `buffer` at `offset`: how many bytes were read (fewer at the end of the
    /// file). One call, EINTR retried.
    public func read(into buffer: inout [UInt8], at offset: Int) throws(SystemError) -> Int {
        try retryingInterrupts("pread") {
            buffer.withUnsafeMutableBytes { pread(rawValue, $0.baseAddress, $0.count, off_t(offset)) }
        }
    }

    /// read(2) once into `buffer`: how many bytes were read (0 at the end of the file).
    /// EINTR is retried.
    public func read(into buffer: inout [UInt8]) throws(SystemError) -> Int {
        try retryingInterrupts("read") {
            buffer.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
        }
    }
}
