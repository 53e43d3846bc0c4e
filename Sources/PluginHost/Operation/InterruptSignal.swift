import CPluginHostShim
import Glibc
public import PluginHostSupport

/// SIGTERM, SIGINT and SIGHUP as a readable descriptor (a self-pipe written by an
/// async-signal-safe handler), so that every wait of the operation can watch it in the same
/// poll(2) as everything else and roll back instead of dying.
public final class InterruptSignal: Sendable {
    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]

    public let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// Installs the handlers for the whole process (the descriptor is the same on every call).
    public static func install() throws(SystemError) -> InterruptSignal {
        let fd = signals.withUnsafeBufferPointer { ph_signal_pipe($0.baseAddress!, Int32($0.count)) }
        guard fd >= 0 else { throw SystemError("sigaction") }
        return InterruptSignal(descriptor: fd)
    }

    /// The signal that arrived since the last call, if any.
    public func consume() -> Int32? {
        var byte: [UInt8] = [0]
        var last: Int32?
        while FileDescriptor.read(descriptor, into: &byte) == 1 { last = Int32(byte[0]) }
        return last
    }
}
