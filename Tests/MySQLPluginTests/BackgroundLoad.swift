import Foundation
import PluginHostSupport

@testable import MySQLQuiesce

/// Statements run from another thread while the test thread is inside a plugin call (which
/// blocks it), each timed: "does this writer stall while the plugin waits for its lock?"
final class BackgroundStatements: @unchecked Sendable {
    private let lock = NSLock()
    private var timings: [(label: String, milliseconds: Double, error: String?)] = []
    private let done = DispatchSemaphore(value: 0)

    /// Starts after `delay` seconds; runs each statement on its own fresh connection.
    init(target: ConnectionTarget, database: String, after delay: Double, _ statements: [(label: String, sql: String)])
    {
        Thread.detachNewThread { [self] in
            Thread.sleep(forTimeInterval: delay)
            for statement in statements {
                let start = Monotonic.now()
                var failure: String?
                do {
                    let connection = try ServerConnection.connect(target, deadline: deadline(30))
                    try connection.execute("USE `\(database)`", deadline: deadline(30))
                    try connection.execute(statement.sql, deadline: deadline(30))
                    connection.close()
                } catch {
                    failure = "\(error)"
                }
                let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
                lock.withLock { timings.append((statement.label, elapsed, failure)) }
            }
            done.signal()
        }
    }

    /// Waits for every statement and returns the timings.
    func wait() -> [(label: String, milliseconds: Double, error: String?)] {
        done.wait()
        return lock.withLock { timings }
    }
}

/// Writers committing single-row InnoDB inserts in a loop for a while, each commit timed: what
/// an application feels while the plugin quiesces and resumes.
final class WriteLoad: @unchecked Sendable {
    struct Figures {
        var commits: Int
        var maximumMilliseconds: Double
        var errors: [String]
    }

    private let lock = NSLock()
    private var figures = Figures(commits: 0, maximumMilliseconds: 0, errors: [])
    private let done = DispatchSemaphore(value: 0)
    private let writers: Int

    init(target: ConnectionTarget, database: String, table: String, writers: Int, seconds: Double) {
        self.writers = writers
        let end = Monotonic.now() + UInt64(seconds * 1_000_000_000)
        for writer in 0..<writers {
            Thread.detachNewThread { [self] in
                defer { done.signal() }
                do {
                    let connection = try ServerConnection.connect(target, deadline: deadline(10))
                    try connection.execute("USE `\(database)`", deadline: deadline(10))
                    var id = 1_000_000 * (writer + 1)
                    while Monotonic.now() < end {
                        id += 1
                        let start = Monotonic.now()
                        try connection.execute(
                            "INSERT INTO \(table) (id, v) VALUES (\(id), 1)", deadline: deadline(30)
                        )
                        let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
                        lock.withLock {
                            figures.commits += 1
                            figures.maximumMilliseconds = max(figures.maximumMilliseconds, elapsed)
                        }
                    }
                    connection.close()
                } catch {
                    lock.withLock { figures.errors.append("\(error)") }
                }
            }
        }
    }

    func wait() -> Figures {
        for _ in 0..<writers { done.wait() }
        return lock.withLock { figures }
    }
}
