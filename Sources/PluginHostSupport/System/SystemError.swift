import Glibc

/// A failed system call: the call's name and its errno. Callers decide what an errno means;
/// this type only carries it.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    /// The call's name and the calling thread's errno now.
    public init(_ call: String) {
        self.init(call, errno: Glibc.errno)
    }

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// Runs a system call that returns -1 and sets errno on failure, retrying EINTR.
@discardableResult
public func retryingInterrupts<T: FixedWidthInteger>(_ call: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = errno
        if error == EINTR { continue }
        throw SystemError(call, errno: error)
    }
}
