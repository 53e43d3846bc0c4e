import Glibc
public import Logging
import PluginHostSupport
import Synchronization

/// Log output that can be held: while filesystems are frozen nothing may be written to a file
/// that could live on one of them (stderr may be redirected to one), so lines are kept in
/// memory until `release()`.
public final class HeldLogOutput: Sendable {
    private struct State {
        var held = false
        var pending: [String] = []
        var failure: (errno: Int32, lost: Int)?
    }

    private let descriptor: Int32
    private let state = Mutex(State())

    /// Writes to `descriptor` (2 for stderr) when not held.
    public init(descriptor: Int32 = 2) {
        self.descriptor = descriptor
    }

    public func hold() {
        state.withLock { $0.held = true }
    }

    /// Writes what was held, then writes directly again.
    public func release() {
        let pending = state.withLock { state in
            state.held = false
            defer { state.pending.removeAll() }
            return state.pending
        }
        pending.forEach(write)
    }

    func emit(_ line: String) {
        let wrote = state.withLock { state -> Bool in
            if state.held {
                state.pending.append(line)
                return false
            }
            return true
        }
        if wrote { write(line) }
    }

    /// A log line that cannot be written (the terminal or pipe went away) is dropped and
    /// counted, never fatal: the operation goes on and its report says so.
    private func write(_ line: String) {
        guard let error = FileDescriptor.write(line, to: descriptor) else { return }
        state.withLock { state in
            state.failure = (state.failure?.errno ?? error, (state.failure?.lost ?? 0) + 1)
        }
    }

    /// What was lost since the start, for the report's warnings: nil when every line was written.
    public var failure: String? {
        state.withLock { state in
            state.failure.map {
                "log output failed (\(SystemError("write", errno: $0.errno))): \($0.lost) log line(s) were dropped; the operation went on"
            }
        }
    }
}

/// A swift-log handler writing `time level label: message key=value …` lines to a `HeldLogOutput`.
public struct HeldLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let output: HeldLogOutput

    public init(label: String, output: HeldLogOutput, level: Logger.Level = .info) {
        self.label = label
        self.output = output
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let rendered = fields.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        output.emit("\(isoTimestamp()) \(event.level) \(label): \(event.message)\(rendered)\n")
    }
}
