import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// The proof of application consistency for MariaDB: the data directory on a loop
/// ext4 filesystem, InnoDB and MyISAM writers committing all the time (separate processes that
/// record every acknowledged commit outside that filesystem), a whole `pluginhost run` whose
/// snapshot command copies the image while frozen, and a second server started on the copy.
///
/// What is proved, per writer (each one commits ids first, first+1, … one at a time and records
/// an id only after the server acknowledged it): the snapshot command counts A acknowledged ids
/// when it starts. Nothing is acknowledged while frozen (commits wait for the lock, or for the
/// frozen filesystem), so the first A ids are every commit acknowledged before the freeze, and the
/// copy must hold all of them. Id first+A may have committed without its acknowledgement being
/// recorded yet; id first+A+1 and later were sent only after the count, that is while commits
/// were blocked, so they committed after the lock was released and cannot be in the copy. With
/// the plugin, the copy therefore holds exactly ids first…first+A-1, and first+A only if its
/// INSERT was sent before the lock was taken (`commits_blocked_since`): no row sent while
/// commits were blocked, and so no row acknowledged after the release, is in it. Whether first+A
/// is there depends on when its commit ran, not on the plugin; every other id is decided.
@Suite(
    "MySQL plugin: a snapshot under load holds every acknowledged commit and nothing later", .serialized,
    .enabled(if: isRoot, "needs root: loop mounts, FIFREEZE, a MariaDB server running as mysql"),
    .enabled(if: mariadbScripts != nil, "no scripts/db/start-mariadb.sh"))
struct MySQLConsistencyTests {
    static let repetitions = 5

    @Test func everyCommitAcknowledgedBeforeTheFreezeIsInTheCopyAndNothingSentUnderTheLock() throws {
        let rig = try MariaDBConsistencyRig(pluginEnabled: true)
        var outcomes: [MariaDBRepetition] = []
        for repetition in 1...Self.repetitions {
            let outcome = try rig.run(repetition: repetition)
            outcomes.append(outcome)
            print(outcome.summary)

            #expect(outcome.status == 0, "rep \(repetition): exit \(outcome.status): \(outcome.stderr.suffix(2000))")
            #expect(outcome.consistency == .application, "rep \(repetition)")
            #expect(
                outcome.commitsBlockedMs != nil && outcome.lockTakenMicroseconds != nil,
                "rep \(repetition): no lock details in the report")
            #expect(outcome.copyServerError == nil, "rep \(repetition): \(outcome.copyServerError ?? "")")
            #expect(outcome.tableProblems.isEmpty, "rep \(repetition): CHECK TABLE: \(outcome.tableProblems)")
            #expect(outcome.crashedLines.isEmpty, "rep \(repetition): error log: \(outcome.crashedLines)")
            #expect(outcome.writerErrors.isEmpty, "rep \(repetition): \(outcome.writerErrors)")
            for writer in outcome.writers {
                let label = "rep \(repetition) \(writer.engine) writer from \(writer.firstID)"
                #expect(writer.acknowledgedAtFreeze > 0, "\(label): no commit acknowledged before the freeze")
                #expect(
                    writer.missing.isEmpty,
                    "\(label): \(writer.missing.count) acknowledged before the freeze are missing, first \(writer.missing.prefix(5))"
                )
                #expect(
                    writer.beyond.isEmpty,
                    "\(label): ids sent after the freeze began are present: \(writer.beyond.prefix(5))")
                #expect(writer.isPrefix, "\(label): the present ids are not a prefix of the writer's sequence")
                #expect(
                    writer.sentUnderLockPresent.isEmpty,
                    "\(label): rows sent after commits were blocked are present: \(writer.sentUnderLockPresent)")
            }
        }
        print(MariaDBConsistencyRig.table(outcomes, title: "with the mysql plugin (backup-stage)"))
    }

    /// The same without the plugin (its manifest `--disabled`): only the freeze. Whatever the copy
    /// shows is printed, not asserted — a crash-consistent copy may or may not be damaged.
    @Test func controlWithTheFreezeAloneIsReportedNotAsserted() throws {
        let rig = try MariaDBConsistencyRig(pluginEnabled: false)
        var outcomes: [MariaDBRepetition] = []
        for repetition in 1...Self.repetitions {
            let outcome = try rig.run(repetition: repetition)
            outcomes.append(outcome)
            print(outcome.summary)
            #expect(outcome.snapshotTaken, "control rep \(repetition): no snapshot: \(outcome.stderr.suffix(2000))")
        }
        print(MariaDBConsistencyRig.table(outcomes, title: "control: freeze alone (plugin disabled)"))
    }
}

/// What one writer's rows in the copy say.
private struct MariaDBWriterOutcome {
    var engine: String
    var firstID: Int64
    /// Acknowledged when the snapshot command started (= before the freeze).
    var acknowledgedAtFreeze: Int
    var acknowledgedInAll: Int
    var presentCount: Int
    /// Acknowledged before the freeze, not in the copy.
    var missing: [Int64]
    /// In the copy although sent after the snapshot command counted (ids > first + A).
    var beyond: [Int64]
    /// The present ids are first, first+1, …, without a gap.
    var isPrefix: Bool
    /// Id first+A (sent, maybe committed, not yet acknowledged at the count) is in the copy.
    var inFlightPresent: Bool
    /// Present ids whose INSERT was sent after the lock was taken (plugin only).
    var sentUnderLockPresent: [Int64]
    var acknowledgedAfterRelease: Int
    var acknowledgedAfterReleasePresent: Int
}

private struct MariaDBRepetition {
    var mode: String
    var repetition: Int
    var status: Int32
    var stderr: String
    var consistency: ConsistencyLevel?
    var snapshotTaken: Bool
    var freezeWindowMs: Double?
    var commitsBlockedMs: Double?
    var lockAcquireMs: String?
    var lockTakenMicroseconds: Int64?
    var writers: [MariaDBWriterOutcome]
    var writerErrors: [String]
    var copyServerError: String?
    var tableProblems: [String]
    var crashedLines: [String]
    /// Other error-log lines about damage or repair (checking, repairing, not closed, [ERROR]).
    var repairLines: [String]
    var innodbCrashRecovery: Bool

    func total(_ engine: String, _ value: (MariaDBWriterOutcome) -> Int) -> Int {
        writers.filter { $0.engine == engine }.reduce(0) { $0 + value($1) }
    }

    var summary: String {
        func engine(_ name: String) -> String {
            let acked = total(name) { $0.acknowledgedAtFreeze }
            let present = total(name) { $0.presentCount }
            let inFlight = total(name) { $0.inFlightPresent ? 1 : 0 }
            let missing = total(name) { $0.missing.count }
            let beyond = total(name) { $0.beyond.count }
            return
                "\(name) acked at freeze \(acked), present \(present) (in flight +\(inFlight), missing \(missing), beyond \(beyond))"
        }
        let afterRelease = writers.reduce(0) { $0 + $1.acknowledgedAfterRelease }
        let afterReleasePresent = writers.reduce(0) { $0 + $1.acknowledgedAfterReleasePresent }
        var lines = [
            "[\(mode)] rep \(repetition): exit \(status), \(consistency?.rawValue ?? "-"); \(engine("InnoDB")); \(engine("MyISAM"))"
        ]
        lines.append(
            "    commits_blocked_ms \(commitsBlockedMs.map { oneDecimal($0) } ?? "-"), freeze window \(freezeWindowMs.map { oneDecimal($0) } ?? "-") ms, lock_acquire_ms \(lockAcquireMs ?? "-"); acked after \(mode == "plugin" ? "release" : "thaw") \(afterRelease), of them present \(afterReleasePresent)"
        )
        lines.append("    CHECK TABLE: \(tableProblems.isEmpty ? "clean" : tableProblems.joined(separator: "; "))")
        lines.append(
            "    error log: \(crashedLines.isEmpty ? "no \"marked as crashed\"" : crashedLines.joined(separator: " | "))\(repairLines.isEmpty ? "" : "; " + repairLines.joined(separator: " | "))\(innodbCrashRecovery ? "; InnoDB redo applied at start (as for any live copy)" : "")"
        )
        if let copyServerError { lines.append("    second server: \(copyServerError)") }
        if !writerErrors.isEmpty { lines.append("    writers: \(writerErrors.joined(separator: "; "))") }
        return lines.joined(separator: "\n")
    }
}

private func oneDecimal(_ value: Double) -> String {
    let scaled = (value * 10).rounded() / 10
    return String(scaled)
}

/// A MariaDB server on its own loop filesystem, a host sandbox with the mysql plugin (enabled or
/// not), and the writer binary; `run(repetition:)` does one operation under load and checks the
/// copy on a second server.
private final class MariaDBConsistencyRig {
    static let tables = [
        ("test.inno", "InnoDB"), ("test.inno", "InnoDB"), ("test.myi", "MyISAM"), ("test.myi", "MyISAM"),
    ]

    let mode: String
    let host: HostSandbox
    let writerBinary: String
    let image: String
    let mountPoint: String
    let server: MariaDBInstance

    init(pluginEnabled: Bool) throws {
        mode = pluginEnabled ? "plugin" : "control"
        host = HostSandbox("mdproof")
        writerBinary = try buildAckWriter(into: host.scratch.path)
        let directory = host.scratch.mkdir("main")
        let fs = try mariadbFilesystem(in: host.scratch, directory: directory)
        image = fs.image
        mountPoint = fs.mountPoint
        server = try MariaDBInstance(directory: directory, keeping: fs)
        _ = try server.query(
            """
            CREATE TABLE test.inno (id BIGINT PRIMARY KEY, payload VARCHAR(255) NOT NULL) ENGINE=InnoDB;
            CREATE TABLE test.myi (id BIGINT PRIMARY KEY, payload VARCHAR(255) NOT NULL) ENGINE=MyISAM;
            """)

        let built =
            String(pluginhostBinary[..<(pluginhostBinary.lastIndex(of: "/") ?? pluginhostBinary.startIndex)])
            + "/libpluginhost-mysql.so"
        guard access(built, R_OK) == 0 else {
            throw FixtureError("\(built) is not built (swift build --build-tests builds it)")
        }
        let library = host.libraryDirectory + "/libpluginhost-mysql.so"
        guard sh("install -m 0755 '\(built)' '\(library)'") == 0 else {
            throw FixtureError("cannot install \(library)")
        }
        let added = host.addPlugin(
            library, name: "mysql", order: 10, timeout: 10, config: "{\"socket\": \"\(server.socket)\"}",
            extra: pluginEnabled ? [] : ["--disabled"])
        guard added.status == 0 else { throw FixtureError("plugin add failed: \(added.stdout) \(added.stderr)") }
    }

    deinit {
        // The server first (it thaws, stops, then lets go of its filesystem), then the sandbox.
        server.stop()
    }

    func run(repetition: Int) throws -> MariaDBRepetition {
        let directory = host.scratch.mkdir("rep\(repetition)")
        var writers: [AckWriter] = []
        defer { for writer in writers { writer.stop() } }
        for (index, (table, _)) in Self.tables.enumerated() {
            writers.append(
                try AckWriter(
                    binary: writerBinary, socket: server.socket, table: table,
                    firstID: Int64(repetition) * 10_000_000 + Int64(index) * 1_000_000 + 1,
                    ackFile: "\(directory)/ack-\(index).log"))
        }
        try waitForLoad(writers)

        // The snapshot command: counts the acknowledgements (nothing can be acknowledged while
        // frozen), then copies the image. It writes only outside the frozen filesystem.
        let ackFiles = writers.map { "'\($0.ackFile)'" }.joined(separator: " ")
        let snapshot = host.script(
            "snapshot-\(repetition).sh",
            """
            #!/bin/sh
            /usr/bin/wc -l \(ackFiles) > '\(directory)/counts'
            exec /bin/cp --sparse=always '\(image)' '\(directory)/copy.img'

            """)
        let result = host.invoke([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", mountPoint, "--json", "--", snapshot,
        ])
        usleep(400_000)  // commits acknowledged after the release
        var writerErrors: [String] = []
        for writer in writers {
            if !writer.isRunning { writerErrors.append("writer \(writer.firstID) died: \(writer.errors)") }
            writer.stop()
        }

        let report = result.report
        let mysql = report?.plugins.first { $0.name == "mysql" }
        let quiesce = mysql?.calls.first { $0.function == .quiesce }?.details
        let resume = mysql?.calls.first { $0.function == .resume }?.details
        let lockTaken = quiesce?["commits_blocked_since"].flatMap { epochMicroseconds(iso: $0) }
        let started = report.flatMap { epochMicroseconds(iso: $0.startedAt) }
        // Released within the resume step (plugin) — for the control, the thaw's end.
        let releaseStep = report?.steps.last { $0.name == (mode == "plugin" ? "resume" : "thaw") }
        let released = started.flatMap { start in releaseStep.map { start + Int64(($0.startMs + $0.durationMs) * 1000) }
        }

        var counts: [String: Int] = [:]
        for line in host.scratch.read(directory + "/counts").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let count = Int(fields[0]), writers.contains(where: { $0.ackFile == fields[1] }) {
                counts[String(fields[1])] = count
            }
        }

        var outcome = MariaDBRepetition(
            mode: mode, repetition: repetition, status: result.status, stderr: result.stderr,
            consistency: report?.consistency, snapshotTaken: report?.snapshotTaken ?? false,
            freezeWindowMs: report?.freeze?.windowMs,
            commitsBlockedMs: resume?["commits_blocked_ms"].flatMap { Double($0) },
            lockAcquireMs: quiesce?["lock_acquire_ms"], lockTakenMicroseconds: lockTaken, writers: [],
            writerErrors: writerErrors,
            copyServerError: nil, tableProblems: [], crashedLines: [], repairLines: [], innodbCrashRecovery: false)

        let copyImage = directory + "/copy.img"
        guard access(copyImage, F_OK) == 0, counts.count == writers.count else {
            outcome.copyServerError = "no copy was made (counts \(counts.count) of \(writers.count))"
            return outcome
        }
        defer { unlink(copyImage) }
        let copyDirectory = host.scratch.mkdir("rep\(repetition)/copy")
        let mounted = try MountedImage(image: copyImage, mountPoint: copyDirectory + "/data")
        defer { mounted.unmount() }
        let copy: MariaDBInstance
        do {
            copy = try MariaDBInstance(directory: copyDirectory, keeping: mounted)
        } catch {
            outcome.copyServerError = "did not start: \(error)"
            outcome.crashedLines = host.scratch.read(copyDirectory + "/error.log").split(separator: "\n").suffix(15)
                .map(String.init)
            return outcome
        }
        defer { copy.stop() }

        // CHECK TABLE first: reading a MyISAM table that was not closed would repair it.
        outcome.tableProblems = try copy.checkAllTables()
        for (index, writer) in writers.enumerated() {
            let engine = Self.tables[index].1
            let acknowledged = writer.acknowledgements()
            let atFreeze = counts[writer.ackFile] ?? 0
            let present = try copy.ids(in: writer.table, writer.firstID...(writer.firstID + 999_999))
            let presentSet = Set(present)
            let firstID = writer.firstID
            let inFlight = firstID + Int64(atFreeze)
            let sentTimes = Dictionary(acknowledged.map { ($0.id, $0.sentMicroseconds) }, uniquingKeysWith: { $1 })
            let afterRelease = released.map { release in acknowledged.filter { $0.ackedMicroseconds > release } } ?? []
            outcome.writers.append(
                MariaDBWriterOutcome(
                    engine: engine, firstID: firstID, acknowledgedAtFreeze: atFreeze,
                    acknowledgedInAll: acknowledged.count,
                    presentCount: present.count,
                    missing: (firstID..<inFlight).filter { !presentSet.contains($0) },
                    beyond: present.filter { $0 > inFlight },
                    isPrefix: present.isEmpty
                        || (present.first == firstID && present.last! - firstID + 1 == Int64(present.count)),
                    inFlightPresent: presentSet.contains(inFlight),
                    // commits_blocked_since has whole milliseconds (rounded down): allow the rest of it.
                    sentUnderLockPresent: lockTaken.map { taken in
                        present.filter { (sentTimes[$0] ?? 0) > taken + 1000 }
                    } ?? [],
                    acknowledgedAfterRelease: afterRelease.count,
                    acknowledgedAfterReleasePresent: afterRelease.filter { presentSet.contains($0.id) }.count))
        }

        let log = host.scratch.read(copy.errorLog).split(separator: "\n").map(String.init)
        outcome.crashedLines = log.filter { $0.lowercased().contains("marked as crashed") }
        outcome.repairLines = log.filter { line in
            let lower = line.lowercased()
            return !lower.contains("marked as crashed")
                && ["[error]", "checking table", "repair", "hasn't closed", "corrupt", "recovering table"].contains {
                    lower.contains($0)
                }
        }
        outcome.innodbCrashRecovery = log.contains { $0.contains("InnoDB: Starting crash recovery") }
        return outcome
    }

    /// Until every writer has acknowledged commits for a while (at least 1 s and 20 commits).
    private func waitForLoad(_ writers: [AckWriter]) throws {
        let start = Monotonic.now()
        let limit = start + 30_000_000_000
        while Monotonic.now() < limit {
            for writer in writers where !writer.isRunning {
                throw FixtureError("writer \(writer.firstID) into \(writer.table) died: \(writer.errors)")
            }
            if Monotonic.now() > start + 1_000_000_000 && writers.allSatisfy({ $0.acknowledgedCount >= 20 }) { return }
            usleep(50_000)
        }
        throw FixtureError("the writers did not get going within 30 s")
    }

    static func table(_ outcomes: [MariaDBRepetition], title: String) -> String {
        var lines = [
            "MariaDB consistency, \(title):",
            "rep  InnoDB acked/present  MyISAM acked/present  blocked_ms  window_ms  CHECK TABLE problems  crashed-in-log  missing",
        ]
        for outcome in outcomes {
            let innodb =
                "\(outcome.total("InnoDB") { $0.acknowledgedAtFreeze })/\(outcome.total("InnoDB") { $0.presentCount })"
            let myisam =
                "\(outcome.total("MyISAM") { $0.acknowledgedAtFreeze })/\(outcome.total("MyISAM") { $0.presentCount })"
            let missing = outcome.writers.reduce(0) { $0 + $1.missing.count }
            lines.append(
                [
                    String(outcome.repetition).leftAligned(4), innodb.leftAligned(22), myisam.leftAligned(22),
                    (outcome.commitsBlockedMs.map { oneDecimal($0) } ?? "-").leftAligned(12),
                    (outcome.freezeWindowMs.map { oneDecimal($0) } ?? "-").leftAligned(11),
                    String(outcome.tableProblems.count).leftAligned(22),
                    String(outcome.crashedLines.count).leftAligned(16),
                    String(missing),
                ].joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// Left-aligned in `width` columns.
    fileprivate func leftAligned(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
