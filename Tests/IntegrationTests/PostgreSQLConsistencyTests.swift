import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Proof of application consistency for the PostgreSQL plugin in checkpoint mode: a
/// PostgreSQL 15 cluster on a loop-mounted ext4 image, under an insert load and a pgbench load,
/// snapshotted by the real `pluginhost run` (its snapshot command copies the image while frozen);
/// a second server started on the copy must hold every commit acknowledged before the freeze,
/// pgbench's balances must agree, and pg_amcheck must find nothing.
@Suite(
    "PostgreSQL consistency proof", .serialized,
    .enabled(if: isRoot, "needs root for loop mounts, FIFREEZE and the PostgreSQL servers"),
    .enabled(if: postgresScripts != nil, "no scripts/db/start-postgres.sh"))
struct PostgreSQLConsistencyTests {
    static let repetitions = 5

    @Test func everyCommitAcknowledgedBeforeTheFreezeIsInTheSnapshot() throws {
        let rig = try ConsistencyRig()
        defer { rig.tearDown() }
        print(RepetitionFigures.header)
        for repetition in 1...Self.repetitions {
            let figures = try rig.repeatOperation(repetition)
            print(figures.line)
        }
    }
}

/// What one repetition measured, printed as a table row.
struct RepetitionFigures {
    var repetition: Int
    var ackedAtFreeze = 0
    var presentInCopy = 0
    var maxLatencyMs = 0.0
    var windowMs = 0.0
    var checkpointMs = ""
    var replayedBytes: UInt64?

    static let header =
        "PostgreSQL proof: rep  acked-at-freeze  present-in-copy  max-pgbench-latency-ms  freeze-window-ms  checkpoint-ms  wal-replayed-by-copy"

    var line: String {
        func pad(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }
        let window = String(Int(windowMs.rounded()))
        let latency = String(Int(maxLatencyMs.rounded()))
        return "PostgreSQL proof: " + pad(String(repetition), 3) + pad(String(ackedAtFreeze), 17)
            + pad(String(presentInCopy), 17)
            + pad(latency, 24) + pad(window, 18) + pad(checkpointMs, 15)
            + pad(replayedBytes.map { "\($0) B" } ?? "?", 22)
    }
}

/// The cluster on its loop filesystem, the plugin installed, the load programs built. Torn down
/// in reverse order by `tearDown()` (called from a `defer`, so also when the test fails).
final class ConsistencyRig {
    static let inserters = 2
    static let pgbenchClients = 2
    static let pgbenchScale = 4

    let host: HostSandbox
    var filesystem: LoopFilesystem?
    var server: PostgresServer?
    var loads: [LoadProcess] = []
    var copyServer: PostgresServer?
    var copyMount: MountedImage?
    let inserter: String
    let snapshotCommand: String

    var scratch: String { host.scratch.path }
    var image: String { scratch + "/pgdata.img" }
    var copyImage: String { scratch + "/copy.img" }

    init() throws {
        host = HostSandbox("pgproof")
        let path = host.scratch.path
        // The cluster's directory is on the loop filesystem; user postgres must reach it.
        filesystem = try LoopFilesystem(in: host.scratch, name: "pgdata", sizeMB: 2048)
        inserter = path + "/ack_inserter"
        snapshotCommand = path + "/snapshot.sh"
        guard let filesystem else { throw FixtureError("no filesystem") }
        sh("chmod 755 '\(filesystem.mountPoint)'")
        guard
            sh(
                "cc -O1 $(pkg-config --cflags libpq) -o '\(inserter)' '\(repositoryRoot)/Tests/Fixtures/ack_inserter.c' $(pkg-config --libs libpq)"
            ) == 0
        else {
            throw FixtureError("cannot build Tests/Fixtures/ack_inserter.c (libpq-dev missing?)")
        }
        let server = try PostgresServer(directory: filesystem.mountPoint + "/pg")
        self.server = server
        let initialised = capture(
            postgresBin + "/pgbench", ["-i", "-q", "-s", String(Self.pgbenchScale)],
            environment: server.clientEnvironment)
        guard initialised.succeeded else { throw FixtureError("pgbench -i failed: \(initialised.stderr)") }
        _ = try server.psql(
            "CREATE TABLE acked (id bigint PRIMARY KEY, payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())")

        // The plugin, installed like an admin would (root's 0755 directory, `plugin add`).
        let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-postgresql.so"
        guard access(built, R_OK) == 0 else { throw FixtureError("build the package first: \(built)") }
        let library = host.libraryDirectory + "/libpluginhost-postgresql.so"
        sh("install -m 0755 '\(built)' '\(library)'")
        let added = host.addPlugin(
            library, name: "postgresql", order: 10, timeout: 60,
            config: "{\"conninfo\": \"\(server.conninfo)\", \"mode\": \"checkpoint\"}")
        guard added.status == 0 else { throw FixtureError("plugin add failed: \(added.stdout) \(added.stderr)") }

        // The snapshot command runs while the cluster's filesystem is frozen, so no commit can be
        // acknowledged meanwhile (its WAL flush blocks). It first counts the acknowledgements
        // recorded so far — outside the frozen filesystem — then copies the image.
        _ = host.script(
            "snapshot.sh",
            """
            #!/bin/sh
            # snapshot.sh COUNTS IMAGE COPY ACKFILE…  (writes nothing to the frozen filesystem)
            set -e
            counts=$1 image=$2 copy=$3
            shift 3
            for acks in "$@"; do wc -l < "$acks"; done > "$counts.partial"
            mv "$counts.partial" "$counts"
            exec cp --sparse=always "$image" "$copy"
            """)
    }

    /// Also when `init` throws after the server started: never leave the scratch directory to
    /// be removed (the host sandbox's deinit) under a running server or a mounted copy.
    deinit { tearDown() }

    /// Undoes everything, most recent first; safe to call twice.
    func tearDown() {
        for load in loads { load.stop() }
        loads = []
        copyServer?.stop()
        copyServer = nil
        copyMount?.unmount()
        copyMount = nil
        if let filesystem {
            // Never frozen by now (the host thaws, even when killed), but a frozen filesystem
            // would hang the server's shutdown and the unmount.
            sh("fsfreeze -u '\(filesystem.mountPoint)' 2>/dev/null")
        }
        server?.stop()
        server = nil
        filesystem = nil  // thaws (again) and unmounts
        unlink(copyImage)
    }

    /// The base of one inserter's ids in one repetition (ids base, base+1, …).
    func idBase(repetition: Int, inserter: Int) -> Int64 {
        Int64(repetition * 10 + inserter) * 10_000_000
    }

    func repeatOperation(_ repetition: Int) throws -> RepetitionFigures {
        let server = try #require(server)
        let filesystem = try #require(filesystem)
        var figures = RepetitionFigures(repetition: repetition)
        let historyBefore = try Int(server.psql("SELECT count(*) FROM pgbench_history")) ?? -1

        // Load: the inserters (acknowledgements recorded on /tmp) and pgbench (log on /tmp), all
        // separate processes over loopback TCP. pgbench must end by itself (-T) to write its log.
        let ackFiles = (0..<Self.inserters).map { "\(scratch)/acks-\(repetition)-\($0)" }
        for (index, file) in ackFiles.enumerated() {
            loads.append(
                try LoadProcess(
                    "inserter \(index)", inserter,
                    [server.conninfo, String(idBase(repetition: repetition, inserter: index)), file],
                    outputFile: file + ".out"))
        }
        let pgbenchLog = "\(scratch)/pgbench-\(repetition)"
        let pgbench = try LoadProcess(
            "pgbench", postgresBin + "/pgbench",
            [
                "-n", "-c", String(Self.pgbenchClients), "-j", String(Self.pgbenchClients), "-T", "12",
                "-l", "--log-prefix=\(pgbenchLog)",
            ],
            environment: server.clientEnvironment, outputFile: pgbenchLog + ".out")
        loads.append(pgbench)
        // Until every inserter has commits behind it, and at least 1.5 s of load.
        let loadStart = Monotonic.now()
        while Monotonic.milliseconds(from: loadStart, to: Monotonic.now()) < 1500
            || ackFiles.contains(where: { lineCount(of: $0) < 20 })
        {
            let running = loads.allSatisfy { $0.isRunning }
            try #require(running, "a load generator ended early: \(loadOutput())")
            try #require(
                Monotonic.milliseconds(from: loadStart, to: Monotonic.now()) < 30_000,
                "no acknowledged commits in 30 s: \(loadOutput())")
            usleep(50_000)
        }

        // The operation. The test process only waits for the host here.
        let counts = "\(scratch)/acked-at-freeze-\(repetition)"
        let operationStart = wallClockMicroseconds()
        let result = host.invoke(
            [
                "run", "--plugins-dir", host.pluginsDirectory, "--mount", filesystem.mountPoint, "--json",
                "--", snapshotCommand, counts, image, copyImage,
            ] + ackFiles)
        let operationEnd = wallClockMicroseconds()
        let stillRunning = loads.allSatisfy { $0.isRunning }
        #expect(stillRunning, "the load stopped during the operation: \(loadOutput())")

        let pgbenchEnd = pgbench.finish(within: 60)
        #expect(pgbenchEnd == .exited(0), "pgbench: \(loadOutput())")
        for load in loads { load.stop() }
        loads = []

        // What the host says.
        #expect(result.status == 0, "pluginhost run: \(result.stdout) \(result.stderr)")
        let report = try #require(result.report, "no JSON report: \(result.stdout) \(result.stderr)")
        #expect(report.consistency == .application)
        #expect(report.freeze?.mounts.map(\.mountPoint) == [filesystem.mountPoint])
        #expect(report.freeze?.mounts.map(\.thaw) == [.thawed])
        let quiesce = report.plugins.first?.calls.first { $0.function == .quiesce }
        #expect(quiesce?.outcome == .ok && quiesce?.details?["mode"] == "checkpoint", "\(String(describing: quiesce))")
        figures.windowMs = try #require(report.freeze?.windowMs)
        figures.checkpointMs = quiesce?.details?["checkpoint_ms"] ?? "?"
        let redoLSN = try #require(
            quiesce?.details?["redo_lsn"].flatMap(parseLSN), "no redo_lsn: \(String(describing: quiesce))")

        // What the load saw: its longest transaction overlapping the operation.
        let transactions = PgbenchTransaction.read(logPrefix: pgbenchLog)
        #expect(transactions.contains { $0.endMicroseconds > operationEnd }, "pgbench did not run past the operation")
        figures.maxLatencyMs =
            Double(
                transactions.filter { $0.startMicroseconds < operationEnd && $0.endMicroseconds > operationStart }
                    .map(\.latencyMicroseconds).max() ?? 0) / 1000

        // The acknowledgements: counted by the snapshot command while frozen, and all of them.
        let countLines = host.scratch.read(counts).split(separator: "\n").map { Int(String($0).trimmed()) }
        try #require(
            countLines.count == ackFiles.count && countLines.allSatisfy { $0 != nil },
            "snapshot command counted nothing: \(countLines)")
        let ackedAtFreeze = countLines.map { $0! }
        figures.ackedAtFreeze = ackedAtFreeze.reduce(0, +)
        var ackedIDs: [[Int64]] = []
        for (index, file) in ackFiles.enumerated() {
            let ids = host.scratch.read(file).split(separator: "\n").compactMap { Int64($0) }
            #expect(ids.count > ackedAtFreeze[index], "inserter \(index) acknowledged nothing after the thaw")
            let base = idBase(repetition: repetition, inserter: index)
            let atFreeze = Array(ids.prefix(ackedAtFreeze[index]))
            // The inserter commits one id after another: the acknowledged ones are base, base+1, …
            #expect(
                atFreeze == Array(base..<base + Int64(atFreeze.count)), "inserter \(index) recorded ids out of order")
            ackedIDs.append(atFreeze)
        }

        // The copy, a filesystem of its own.
        #expect(sh("e2fsck -fn '\(copyImage)' >/dev/null 2>&1") == 0, "e2fsck finds the copy's filesystem unclean")
        let mount = try MountedImage(image: copyImage, mountPoint: scratch + "/copy")
        copyMount = mount
        let copyDirectory = mount.mountPoint + "/pg"
        let control = capture(postgresBin + "/pg_controldata", [copyDirectory + "/data"])
        let copyRedo = control.stdout.split(separator: "\n").first {
            $0.hasPrefix("Latest checkpoint's REDO location:")
        }
        .flatMap { parseLSN(String($0.split(separator: ":").last ?? "")) }
        // Crash recovery of the copy starts at the plugin's CHECKPOINT (or a later one).
        #expect(
            copyRedo.map { $0 >= redoLSN } == true,
            "copy's REDO \(String(describing: copyRedo)) is before the plugin's \(redoLSN)")
        let logBefore = host.scratch.read(copyDirectory + "/postgres.log").utf8.count

        let copy = try PostgresServer(directory: copyDirectory)
        copyServer = copy
        let recoveryLog = String(
            decoding: Array(host.scratch.read(copyDirectory + "/postgres.log").utf8.dropFirst(logBefore)), as: UTF8.self
        )
        figures.replayedBytes = replayedBytes(in: recoveryLog)

        // (1) Every commit acknowledged before the freeze is in the copy; at most one more per
        // inserter (the one in flight), and the present ids are a prefix of each sequence.
        for (index, ids) in ackedIDs.enumerated() {
            let base = idBase(repetition: repetition, inserter: index)
            let found = try copy.row(
                "SELECT count(*) FILTER (WHERE id < \(base + Int64(ids.count))), count(*), coalesce(max(id) - \(base) + 1, 0) FROM acked WHERE id >= \(base) AND id < \(base + 10_000_000)"
            )
            let (acknowledgedPresent, present, span) = (Int(found[0]) ?? -1, Int(found[1]) ?? -1, Int(found[2]) ?? -1)
            #expect(
                acknowledgedPresent == ids.count,
                "inserter \(index): \(ids.count - acknowledgedPresent) of \(ids.count) acknowledged commits missing from the copy"
            )
            #expect(
                present == span,
                "inserter \(index): the ids in the copy have gaps (\(present) rows up to id offset \(span))")
            #expect(
                present <= ids.count + 1,
                "inserter \(index): the copy holds \(present) rows, more than \(ids.count) acknowledged + 1 in flight")
            figures.presentInCopy += present
        }

        // (2) pgbench's balances agree: every transaction moved the same delta in all four tables.
        let sums = try copy.row(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)"
        )
        #expect(
            sums.count == 5 && Set(sums.prefix(4)).count == 1,
            "pgbench sums differ in the copy (accounts, branches, tellers, history): \(sums)")
        #expect((Int(sums.last ?? "") ?? 0) > historyBefore, "no pgbench transaction of this repetition is in the copy")

        // (3) pg_amcheck, heap and every index entry, is clean.
        let amcheck = capture(
            postgresBin + "/pg_amcheck", ["--all", "--install-missing", "--heapallindexed"],
            environment: copy.clientEnvironment, timeoutSeconds: 600)
        #expect(
            amcheck.succeeded && amcheck.stdout.trimmed().isEmpty,
            "pg_amcheck on the copy: \(amcheck.stdout) \(amcheck.stderr)")

        copy.stop()
        copyServer = nil
        mount.unmount()
        copyMount = nil
        unlink(copyImage)
        return figures
    }

    /// WAL replayed by the copy's crash recovery ("redo starts at X" … "redo done at Y").
    func replayedBytes(in log: String) -> UInt64? {
        func lsn(after marker: String) -> UInt64? {
            guard let line = log.split(separator: "\n").first(where: { $0.contains(marker) }),
                let range = line.firstRange(of: marker)
            else { return nil }
            return parseLSN(String(line[range.upperBound...].prefix { $0 != " " && $0 != "," }))
        }
        guard let start = lsn(after: "redo starts at "), let end = lsn(after: "redo done at ") else { return nil }
        return end >= start ? end - start : nil
    }

    func lineCount(of file: String) -> Int {
        host.scratch.read(file).reduce(0) { $1 == "\n" ? $0 + 1 : $0 }
    }

    func loadOutput() -> String {
        loads.map { "\($0.name): \(host.scratch.read($0.outputFile).suffix(500))" }.joined(separator: "; ")
    }
}
