import Glibc
import PluginHostSupport

/// Watches the held session's socket from a thread of its own while the session is idle, and
/// records the moment it becomes readable or hangs up: an idle client/server session receives
/// nothing unless the server closes it (KILL, the `wait_timeout` dead-man switch, a restart).
/// It only polls: it never reads, writes or logs, so it cannot disturb libmariadb or a frozen
/// filesystem. `stop()` must be called before the connection is closed.
final class SessionWatcher {
    /// When the session was seen closed.
    struct Loss: Sendable, Equatable {
        let monotonic: Monotonic.Instant
        let wallClock: String
    }

    private let state: WatchState
    private var thread = pthread_t()
    private var running = false

    /// Starts watching `socket` (a connected, idle client socket).
    init(socket: Int32) throws(SystemError) {
        let wake = try makePipe()
        state = WatchState(socket: socket, wake: wake)
        let context = Unmanaged.passRetained(state).toOpaque()
        let result = pthread_create(
            &thread, nil,
            { context in
                let state = Unmanaged<WatchState>.fromOpaque(context!).takeRetainedValue()
                state.watch()
                return nil
            }, context)
        if result != 0 {
            Unmanaged<WatchState>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result)
        }
        running = true
    }

    deinit { _ = stop() }

    /// Stops the thread and returns when the session was lost, if it was.
    func stop() -> Loss? {
        if running {
            _ = try? state.wake.write.writeAll([1])
            pthread_join(thread, nil)
            running = false
        }
        return state.loss
    }
}

/// POLLRDHUP (Linux, <poll.h> with _GNU_SOURCE, which Glibc's module does not define): the peer closed.
private let pollReadHangUp: Int16 = 0x2000

/// What the watcher thread touches; read by the owner only after `pthread_join`.
private final class WatchState: @unchecked Sendable {
    let socket: Int32
    let wake: (read: FileDescriptor, write: FileDescriptor)
    var loss: SessionWatcher.Loss?

    init(socket: Int32, wake: (read: FileDescriptor, write: FileDescriptor)) {
        self.socket = socket
        self.wake = wake
    }

    func watch() {
        var descriptors = [
            pollfd(fd: socket, events: Int16(POLLIN | POLLPRI) | pollReadHangUp, revents: 0),
            pollfd(fd: wake.read.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            descriptors[0].revents = 0
            descriptors[1].revents = 0
            let count = poll(&descriptors, 2, -1)
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            if descriptors[0].revents != 0 {
                loss = SessionWatcher.Loss(monotonic: .now, wallClock: isoTimestamp())
                return
            }
            if descriptors[1].revents != 0 { return }
        }
    }
}
