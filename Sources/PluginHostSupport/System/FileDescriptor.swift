import CPluginHostShim
public import Glibc

/// An owned file descriptor, closed when the last reference goes away (or by `close()`).
///
/// A class, not a `~Copyable` struct (yet): Swift 6.3 has no arrays or tuples of noncopyable
/// values, and a `let` of a class cannot be consumed, while descriptors are kept in arrays
/// (the session's clients), returned in pairs (`makePipe`, `messageSocketPair`) and closed
/// early from class properties (a worker's socket on kill). Not `Sendable`: no descriptor
/// crosses a thread but through a type that says so (`@unchecked Sendable` with its reason).
public final class FileDescriptor {
    public private(set) var rawValue: Int32

    public init(owning rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit { close() }

    public var isOpen: Bool { rawValue >= 0 }

    /// Closes the descriptor now; later calls do nothing.
    public func close() {
        guard rawValue >= 0 else { return }
        _ = Glibc.close(rawValue)  // Linux always releases the descriptor, even on EINTR.
        rawValue = -1
    }

    /// open(2) with O_CLOEXEC added.
    public static func open(_ path: String, _ flags: Int32, mode: UInt32 = 0) throws(SystemError) -> FileDescriptor {
        let fd = try retryingInterrupts("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(owning: fd)
    }

    /// fstat(2).
    public func status() throws(SystemError) -> stat {
        var info = stat()
        try retryingInterrupts("fstat") { fstat(rawValue, &info) }
        return info
    }

    /// Reads up to `limit` bytes in total; throws if the file holds more.
    public func readAll(limit: Int) throws(SystemError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                while true {
                    let n = Glibc.read(rawValue, buffer.baseAddress, buffer.count)
                    if n >= 0 || errno != EINTR { return n }
                }
            }
            if count < 0 { throw SystemError("read") }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > limit { throw SystemError("read", errno: EFBIG) }
        }
    }

    /// Reads what is available now (non-blocking descriptors): nil at end of file, an empty
    /// array when nothing is available.
    public func readAvailable(into buffer: inout [UInt8]) -> [UInt8]? {
        let count = buffer.withUnsafeMutableBytes { raw -> Int in
            while true {
                let n = Glibc.read(rawValue, raw.baseAddress, raw.count)
                if n == -1 && errno == EINTR { continue }
                return n
            }
        }
        if count == 0 { return nil }
        if count < 0 { return errno == EAGAIN ? [] : nil }
        return Array(buffer[0..<count])
    }

    /// Writes every byte, retrying short writes and EINTR.
    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        let failure: Int32? = bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(rawValue, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += n
            }
            return nil
        }
        if let failure { throw SystemError("write", errno: failure) }
    }

    public func writeAll(_ text: String) throws(SystemError) {
        try writeAll(Array(text.utf8))
    }

    /// Writes all of `text` to a descriptor this object does not own (stdout, stderr), giving
    /// up if it cannot: for output that must never fail the caller. Returns the errno of the
    /// write that failed (EPIPE once the reader went away: SIGPIPE is ignored in every role),
    /// or nil.
    @discardableResult
    public static func write(_ text: String, to descriptor: Int32) -> Int32? {
        write(Array(text.utf8), to: descriptor)
    }

    /// write(2) of all of `bytes` to a descriptor this object does not own, as `write(_:to:)`
    /// for text.
    @discardableResult
    public static func write(_ bytes: [UInt8], to descriptor: Int32) -> Int32? {
        bytes.withUnsafeBytes { raw -> Int32? in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { return errno }
                if n == 0 { return EIO }
                offset += n
            }
            return nil
        }
    }

    /// read(2) once from a descriptor this object does not own (a signal's self-pipe):
    /// the count read, 0 at the end of the file, -1 on an error (errno set; EAGAIN when a
    /// non-blocking descriptor has nothing). EINTR is retried.
    public static func read(_ descriptor: Int32, into buffer: inout [UInt8]) -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            return n
        }
    }
}

/// pipe2(2) with O_CLOEXEC; the read end is non-blocking when asked.
public func makePipe(nonBlockingRead: Bool = false) throws(SystemError) -> (read: FileDescriptor, write: FileDescriptor)
{
    var fds: [Int32] = [-1, -1]
    try retryingInterrupts("pipe2") { ph_pipe_cloexec(&fds) }
    let read = FileDescriptor(owning: fds[0])
    let write = FileDescriptor(owning: fds[1])
    if nonBlockingRead {
        let flags = fcntl(read.rawValue, F_GETFL)
        _ = fcntl(read.rawValue, F_SETFL, flags | O_NONBLOCK)
    }
    return (read, write)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: UInt32) throws(SystemError) {
    let temporary = path + ".tmp.\(getpid())"
    let file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: mode)
    do {
        try file.writeAll(bytes)
        file.close()
        try retryingInterrupts("rename") { rename(temporary, path) }
    } catch {
        unlink(temporary)
        throw error
    }
}
