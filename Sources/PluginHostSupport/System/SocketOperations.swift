import CPluginHostShim
public import Glibc

/// What `receiveMessage` found.
public enum ReceivedMessage: Sendable, Equatable {
    /// A message of `length` bytes, at the start of the buffer. When `length` is larger than
    /// the buffer, the message was truncated to the buffer's size (the rest is lost).
    case message(length: Int)
    /// The peer closed its end (recv returned 0).
    case endOfStream
    /// Nothing to read now (EAGAIN on a non-blocking receive).
    case wouldBlock
}

/// Socket system calls on an owned descriptor, one wrapper per call (in the manner of
/// swift-system's `FileOperations.swift`): the doc names the C call and its EINTR policy.
extension FileDescriptor {
    /// socketpair(2) of two connected AF_UNIX SOCK_SEQPACKET sockets (SOCK_CLOEXEC):
    /// messages keep their boundaries, and a peer's exit is the end of the stream.
    public static func messageSocketPair() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SystemError("socketpair")
        }
        return (FileDescriptor(owning: pair[0]), FileDescriptor(owning: pair[1]))
    }

    /// The kinds of socket pluginhost opens.
    public enum SocketType: Sendable {
        /// SOCK_STREAM.
        case stream
        /// SOCK_DGRAM.
        case datagram

        var rawValue: Int32 {
            switch self {
            case .stream: Int32(SOCK_STREAM.rawValue)
            case .datagram: Int32(SOCK_DGRAM.rawValue)
            }
        }
    }

    /// socket(2) of `family` (AF_UNIX by default) with SOCK_CLOEXEC, and SOCK_NONBLOCK when asked.
    public static func socket(
        family: Int32 = AF_UNIX, _ type: SocketType, nonBlocking: Bool = false
    ) throws(SystemError) -> FileDescriptor {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let fd = Glibc.socket(family, type.rawValue | flags, 0)
        guard fd >= 0 else { throw SystemError("socket") }
        return FileDescriptor(owning: fd)
    }

    /// connect(2) to a unix-domain socket. EINTR is retried: a unix-domain connect is
    /// interrupted only while it waits for room in the listener's backlog, and leaves the
    /// socket unconnected, so it can simply be made again.
    public func connect(to address: UnixSocketAddress) throws(SystemError) {
        _ = try retryingInterrupts("connect") { address.withSockaddr { Glibc.connect(rawValue, $0, $1) } }
    }

    /// connect(2) to an address getaddrinfo(3) returned. EINTR is thrown: an interrupted TCP
    /// connect goes on in the background, as after EINPROGRESS, and connecting again would fail
    /// with EALREADY. On a non-blocking socket EINPROGRESS is thrown too: wait until writable,
    /// then `socketError()`.
    public func connect(to address: UnsafePointer<sockaddr>, length: socklen_t) throws(SystemError) {
        guard Glibc.connect(rawValue, address, length) == 0 else { throw SystemError("connect") }
    }

    /// bind(2) to a unix-domain socket path.
    public func bind(to address: UnixSocketAddress) throws(SystemError) {
        guard address.withSockaddr({ Glibc.bind(rawValue, $0, $1) }) == 0 else { throw SystemError("bind") }
    }

    /// listen(2).
    public func listen(backlog: Int32) throws(SystemError) {
        guard Glibc.listen(rawValue, backlog) == 0 else { throw SystemError("listen") }
    }

    /// accept4(2) with SOCK_CLOEXEC: the next queued connection, or nil when none is queued
    /// (EAGAIN on a non-blocking socket). EINTR is retried.
    public func accept() throws(SystemError) -> FileDescriptor? {
        while true {
            let fd = ph_accept(rawValue)
            if fd >= 0 { return FileDescriptor(owning: fd) }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw SystemError("accept", errno: error)
        }
    }

    /// setsockopt(2) of an Int32 option (TCP_NODELAY, say).
    public func setOption(level: Int32, _ option: Int32, to value: Int32) throws(SystemError) {
        var value = value
        guard setsockopt(rawValue, level, option, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SystemError("setsockopt")
        }
    }

    /// getsockopt(2) of SO_ERROR: the errno of a non-blocking connect (0: connected).
    public func socketError() throws(SystemError) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(rawValue, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { throw SystemError("getsockopt") }
        return error
    }

    /// send(2) of one whole message with MSG_NOSIGNAL (a closed peer is EPIPE, never SIGPIPE).
    /// EINTR is retried. A message socket sends all of it or nothing; a short send is thrown
    /// as EMSGSIZE.
    public func sendMessage(_ bytes: [UInt8]) throws(SystemError) {
        let sent = try send(bytes[...], wait: true)
        if sent != bytes.count { throw SystemError("send", errno: EMSGSIZE) }
    }

    /// send(2) with MSG_NOSIGNAL, and MSG_DONTWAIT unless `wait`: how many bytes went, 0 when
    /// none could without waiting (EAGAIN). EINTR is retried.
    public func send(_ bytes: ArraySlice<UInt8>, wait: Bool) throws(SystemError) -> Int {
        let flags = Int32(MSG_NOSIGNAL) | (wait ? 0 : Int32(MSG_DONTWAIT))
        while true {
            let sent = bytes.withUnsafeBytes { Glibc.send(rawValue, $0.baseAddress, $0.count, flags) }
            if sent >= 0 { return sent }
            let error = errno
            if error == EINTR { continue }
            if !wait && (error == EAGAIN || error == EWOULDBLOCK) { return 0 }
            throw SystemError("send", errno: error)
        }
    }

    /// sendto(2) of one datagram to `address` with MSG_NOSIGNAL, and MSG_DONTWAIT unless
    /// `wait`: how many bytes went, 0 when it could not go without waiting (EAGAIN). EINTR is
    /// retried.
    public func send(_ bytes: [UInt8], to address: UnixSocketAddress, wait: Bool) throws(SystemError) -> Int {
        let flags = Int32(MSG_NOSIGNAL) | (wait ? 0 : Int32(MSG_DONTWAIT))
        while true {
            let sent = bytes.withUnsafeBytes { buffer in
                address.withSockaddr { Glibc.sendto(rawValue, buffer.baseAddress, buffer.count, flags, $0, $1) }
            }
            if sent >= 0 { return sent }
            let error = errno
            if error == EINTR { continue }
            if !wait && (error == EAGAIN || error == EWOULDBLOCK) { return 0 }
            throw SystemError("sendto", errno: error)
        }
    }

    /// recv(2) of one message into `buffer` (MSG_TRUNC: the length reported is the message's
    /// own, even when the buffer was too small for it), MSG_DONTWAIT unless `wait`. EINTR is
    /// retried.
    public func receiveMessage(into buffer: inout [UInt8], wait: Bool) throws(SystemError) -> ReceivedMessage {
        let flags = Int32(MSG_TRUNC) | (wait ? 0 : Int32(MSG_DONTWAIT))
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.recv(rawValue, $0.baseAddress, $0.count, flags) }
            if count > 0 { return .message(length: count) }
            if count == 0 { return .endOfStream }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return .wouldBlock }
            throw SystemError("recv", errno: error)
        }
    }

    /// recv(2) from a stream with MSG_DONTWAIT: the bytes read (empty at the end of the
    /// stream), or nil when nothing is there now (EAGAIN). EINTR is retried.
    public func receiveAvailable(into buffer: inout [UInt8]) throws(SystemError) -> ArraySlice<UInt8>? {
        while true {
            let count = buffer.withUnsafeMutableBytes {
                Glibc.recv(rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
            }
            if count >= 0 { return buffer[0..<count] }
            let error = errno
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw SystemError("recv", errno: error)
        }
    }

    /// fcntl(2) F_GETFL/F_SETFL of O_NONBLOCK.
    public func setNonBlocking(_ nonBlocking: Bool) throws(SystemError) {
        let flags = fcntl(rawValue, F_GETFL)
        guard flags >= 0 else { throw SystemError("fcntl") }
        let wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        guard wanted == flags || fcntl(rawValue, F_SETFL, wanted) == 0 else { throw SystemError("fcntl") }
    }

    /// fcntl(2) F_DUPFD_CLOEXEC of a descriptor this object does not own (stdout, say): a copy
    /// that is owned.
    public static func duplicate(_ descriptor: Int32) throws(SystemError) -> FileDescriptor {
        let fd = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw SystemError("fcntl") }
        return FileDescriptor(owning: fd)
    }
}
