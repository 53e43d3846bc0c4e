import Foundation
import Glibc
import PluginHostSupport
import Testing

/// The system-call wrappers of PluginHostSupport/System that hold logic of their own: what
/// they skip, how they report readiness, truncation, contention and EINTR.
@Suite("System calls")
struct SystemCallTests {
    /// A fresh one for each test (each test runs on an instance of its own).
    private let temporary = TemporaryDirectory()
    private var directory: String { temporary.path }

    // MARK: - Directories and paths

    @Test func aDirectoryListsEveryNameButDotAndDotDot() throws {
        for name in ["b", ".hidden", "a.json"] {
            try FileDescriptor.open("\(directory)/\(name)", O_WRONLY | O_CREAT, mode: 0o600).writeAll("x")
        }
        #expect(try FileSystem.entries(of: directory).sorted() == [".hidden", "a.json", "b"])
    }

    @Test func aMissingDirectoryIsOpendirsENOENT() throws {
        #expect(throws: SystemError("opendir", errno: ENOENT)) { try FileSystem.entries(of: directory + "/missing") }
        try FileDescriptor.open("\(directory)/file", O_WRONLY | O_CREAT, mode: 0o600).writeAll("x")
        #expect(throws: SystemError("opendir", errno: ENOTDIR)) { try FileSystem.entries(of: "\(directory)/file") }
    }

    @Test func statusFollowsASymlinkOnlyWhenAsked() throws {
        try FileSystem.makeDirectory("\(directory)/real", mode: 0o700)
        #expect(symlink("\(directory)/real", "\(directory)/link") == 0)
        #expect(try FileSystem.status(of: "\(directory)/link").st_mode & S_IFMT == S_IFDIR)
        #expect(try FileSystem.status(of: "\(directory)/link", followingSymlinks: false).st_mode & S_IFMT == S_IFLNK)
        #expect(throws: SystemError("mkdir", errno: EEXIST)) {
            try FileSystem.makeDirectory("\(directory)/real", mode: 0o700)
        }
        try FileSystem.rename("\(directory)/link", to: "\(directory)/moved")
        #expect(!FileSystem.exists("\(directory)/link"))
        #expect(FileSystem.exists("\(directory)/moved"))
        #expect(throws: SystemError("unlink", errno: ENOENT)) { try FileSystem.remove("\(directory)/link") }
    }

    // MARK: - poll

    @Test func pollReportsReadinessAndTimesOut() throws {
        let pipe = try makePipe()
        var entries = [PollEntry(pipe.read.rawValue), PollEntry(pipe.write.rawValue, .writable)]
        #expect(try Poll.wait(&entries, timeoutMilliseconds: 0) == 1)
        #expect(entries[0].returned.isEmpty && !entries[0].isReady)
        #expect(entries[1].returned == .writable)
        // A deadline that has passed: one look, no wait.
        #expect(try Poll.wait(for: pipe.read.rawValue, until: Monotonic.Instant.now) == false)
        try pipe.write.writeAll("x")
        #expect(try Poll.wait(for: pipe.read.rawValue, until: nil) == true)
        pipe.write.close()
        var read = [PollEntry(pipe.read.rawValue)]
        #expect(try Poll.wait(&read, until: nil) == 1)
        #expect(read[0].returned.contains(.readable))
    }

    /// A signal during poll(2): thrown by the timeout form (a caller may need to notice it),
    /// retried by the deadline form (pluginhost's signals arrive through a descriptor).
    @Test func pollReportsOrRetriesEINTRAsDocumented() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART (poll is never restarted anyway)
        // Left installed: a late signal must find the no-op handler, never the default action.
        try #require(sigaction(SIGUSR1, &action, nil) == 0)
        // Swift Testing's threads block most signals: let SIGUSR1 in on this one while it polls.
        var usr1 = sigset_t()
        sigemptyset(&usr1)
        sigaddset(&usr1, SIGUSR1)
        try #require(pthread_sigmask(SIG_UNBLOCK, &usr1, nil) == 0)
        defer { pthread_sigmask(SIG_BLOCK, &usr1, nil) }
        let target = pthread_self()

        // The timeout form: the first signal ends the wait with EINTR.
        let pipe = try makePipe()
        let stop = Flag()
        let stopped = Flag()
        Thread.detachNewThread {
            while !stop.isSet {
                pthread_kill(target, SIGUSR1)
                usleep(20_000)
            }
            stopped.set()
        }
        var entries = [PollEntry(pipe.read.rawValue)]
        // Finite, so that a signal that never interrupts fails the test (poll returns 0) instead of hanging it.
        #expect(throws: SystemError("poll", errno: EINTR)) { try Poll.wait(&entries, timeoutMilliseconds: 10_000) }

        // The deadline form waits through the signals until the pipe is readable.
        let writer = pipe.write.rawValue
        Thread.detachNewThread {
            usleep(200_000)  // ten signals or so land in the wait first
            _ = write(writer, "x", 1)
        }
        // Also finite: a write that never wakes the wait fails the test (0 ready) instead of hanging it.
        #expect(try Poll.wait(&entries, until: Monotonic.Instant.now + .seconds(10)) == 1)
        stop.set()
        while !stopped.isSet { usleep(1000) }  // no signal for this thread once the test is over
    }

    // MARK: - Message sockets

    @Test func aMessageSocketPairKeepsMessagesWhole() throws {
        let (one, other) = try FileDescriptor.messageSocketPair()
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(try other.receiveMessage(into: &buffer, wait: false) == .wouldBlock)
        try one.sendMessage([1, 2, 3])
        try one.sendMessage([4])
        #expect(try other.receiveMessage(into: &buffer, wait: false) == .message(length: 3))
        #expect(buffer.prefix(3) == [1, 2, 3])
        #expect(try other.receiveMessage(into: &buffer, wait: true) == .message(length: 1))
        #expect(buffer[0] == 4)
    }

    @Test func anOversizedMessageIsReportedWithItsOwnLength() throws {
        let (one, other) = try FileDescriptor.messageSocketPair()
        try one.sendMessage([UInt8](0..<100))
        var small = [UInt8](repeating: 0, count: 10)
        #expect(try other.receiveMessage(into: &small, wait: false) == .message(length: 100))
        #expect(small == [UInt8](0..<10))
        // The rest of that message is gone: the next receive finds nothing.
        #expect(try other.receiveMessage(into: &small, wait: false) == .wouldBlock)
    }

    @Test func aClosedPeerIsTheEndOfTheStreamAndEPIPENotSIGPIPE() throws {
        let (one, other) = try FileDescriptor.messageSocketPair()
        other.close()
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(try one.receiveMessage(into: &buffer, wait: false) == .endOfStream)
        #expect(throws: SystemError("send", errno: EPIPE)) { try one.sendMessage([1]) }
    }

    @Test func aUnixStreamSocketAcceptsAndConnects() throws {
        let address = try #require(UnixSocketAddress(path: "\(directory)/socket"))
        let listener = try FileDescriptor.socket(.stream)
        try listener.bind(to: address)
        try listener.listen(backlog: 4)
        try listener.setNonBlocking(true)
        #expect(try listener.accept() == nil)  // nothing queued: EAGAIN
        let client = try FileDescriptor.socket(.stream)
        try client.connect(to: address)
        let served = try #require(try listener.accept())
        try client.writeAll("hello")
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(try Poll.wait(for: served.rawValue, until: nil))
        #expect(try served.receiveAvailable(into: &buffer).map(Array.init) == Array("hello".utf8))
        #expect(try served.receiveAvailable(into: &buffer) == nil)  // nothing more now
        client.close()
        #expect(try served.receiveAvailable(into: &buffer)?.isEmpty == true)  // the end of the stream
    }

    // MARK: - flock, ftruncate, pread, pwrite

    @Test func flockContendsBetweenTwoOpenFiles() throws {
        let path = "\(directory)/lock"
        let first = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        let second = try FileDescriptor.open(path, O_RDONLY)
        #expect(try first.tryLock(.exclusive))
        #expect(try second.tryLock(.exclusive) == false)
        #expect(try second.tryLock(.shared) == false)
        try first.unlock()
        #expect(try second.tryLock(.shared))
        #expect(try first.tryLock(.shared))
        #expect(try first.tryLock(.exclusive) == false)
        second.close()  // closing releases its lock
        #expect(try first.tryLock(.exclusive))
    }

    @Test func positionedWritesAndTruncation() throws {
        let file = try FileDescriptor.open("\(directory)/data", O_RDWR | O_CREAT, mode: 0o600)
        try file.write(Array("a long first line\n".utf8), at: 0)
        try file.truncate(to: 0)
        try file.write(Array("short\n".utf8), at: 0)
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(try file.read(into: &buffer, at: 0) == 6)
        #expect(Array(buffer[0..<6]) == Array("short\n".utf8))
        #expect(try file.read(into: &buffer, at: 6) == 0)
    }
}

/// A flag one thread sets and another reads.
private final class Flag: @unchecked Sendable {
    private var value = false
    private let lock = NSLock()
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
