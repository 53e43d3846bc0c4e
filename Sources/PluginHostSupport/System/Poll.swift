import Glibc

/// The events poll(2) watches for and reports (`POLLIN`, `POLLOUT`, …).
public struct PollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// POLLIN: data to read, a connection to accept, or the end of the stream.
    public static let readable = PollEvents(rawValue: Int16(POLLIN))
    /// POLLOUT: a write would not block.
    public static let writable = PollEvents(rawValue: Int16(POLLOUT))
    /// POLLERR (reported only).
    public static let error = PollEvents(rawValue: Int16(POLLERR))
    /// POLLHUP (reported only): the peer closed its end.
    public static let hangUp = PollEvents(rawValue: Int16(POLLHUP))
    /// POLLNVAL (reported only): the descriptor is not open.
    public static let invalid = PollEvents(rawValue: Int16(POLLNVAL))
}

/// One descriptor in a poll(2) set: what to watch for, and what was reported.
public struct PollEntry: Sendable, Equatable {
    public var descriptor: Int32
    public var events: PollEvents
    /// Filled in by `Poll.wait`: empty when the descriptor is not ready.
    public var returned: PollEvents

    public init(_ descriptor: Int32, _ events: PollEvents = .readable) {
        self.descriptor = descriptor
        self.events = events
        self.returned = []
    }

    /// Something was reported for the descriptor (readiness, an error, a hang-up).
    public var isReady: Bool { !returned.isEmpty }
}

/// poll(2), the one wait of every single-threaded loop.
public enum Poll {
    /// poll(2) on `entries` for at most `timeoutMilliseconds` (-1: no limit, 0: do not wait).
    /// Fills each entry's `returned` and returns how many entries are ready (0: timed out).
    ///
    /// EINTR is thrown, never retried: polling again would restart the whole timeout. Callers
    /// with a deadline use `wait(_:until:)`, which retries with the time left.
    @discardableResult
    public static func wait(_ entries: inout [PollEntry], timeoutMilliseconds: Int32) throws(SystemError) -> Int {
        var fds = entries.map { pollfd(fd: $0.descriptor, events: $0.events.rawValue, revents: 0) }
        let ready = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        guard ready >= 0 else { throw SystemError("poll") }
        for index in entries.indices { entries[index].returned = PollEvents(rawValue: fds[index].revents) }
        return Int(ready)
    }

    /// poll(2) on `entries` until one is ready or CLOCK_MONOTONIC reaches `deadline` (nil: no
    /// limit). Returns how many entries are ready (0: the deadline passed).
    ///
    /// EINTR is retried with the time left until `deadline`: in pluginhost a signal that must
    /// stop a wait arrives through a descriptor (`InterruptSignal`'s self-pipe, a pidfd) that
    /// the caller puts in `entries`, so the interrupted call itself carries no news.
    @discardableResult
    public static func wait(_ entries: inout [PollEntry], until deadline: Monotonic.Instant?) throws(SystemError) -> Int
    {
        while true {
            do {
                return try wait(&entries, timeoutMilliseconds: Monotonic.pollTimeout(until: deadline))
            } catch let error where error.errno == EINTR {
                continue
            }
        }
    }

    /// Waits for one descriptor: true when it reported `events` (or an error or hang-up),
    /// false when the deadline passed. EINTR as in `wait(_:until:)`.
    public static func wait(
        for descriptor: Int32, _ events: PollEvents = .readable, until deadline: Monotonic.Instant?
    ) throws(SystemError) -> Bool {
        var entries = [PollEntry(descriptor, events)]
        return try wait(&entries, until: deadline) > 0
    }
}
