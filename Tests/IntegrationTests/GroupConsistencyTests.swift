import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// The proof that a consistency group takes one consistent cut of several machines: MariaDB on
/// member 1, PostgreSQL on member 2 (each on its member's loop filesystem, quiesced by the
/// bundled plugins), a plain member 3, and a writer that moves money from MariaDB to PostgreSQL
/// (debit committed first, then the credit: `Tests/Fixtures/transfer_writer.c`). Five group
/// snapshots under that load; each pair of copies is restored on fresh servers: every credit must
/// have its debit, and the money must add up. The control takes the two snapshots with two
/// independent operations a second apart: its copies hold credits without debits, so the check
/// does see a cut that is not consistent.
@Suite(
    "Consistency groups: one cut across MariaDB and PostgreSQL", .serialized,
    .enabled(if: isRoot, "needs root: loop mounts, FIFREEZE, network namespaces, database servers"),
    .enabled(
        if: etcdBinary != nil && etcdctlBinary != nil && ipBinary != nil, "needs etcd-server, etcd-client and iproute2"),
    .enabled(
        if: mariadbScripts != nil && postgresScripts != nil,
        "no database start scripts in the repository's scripts/db"))
struct GroupConsistencyTests {
    static let repetitions = 5

    @Test func everyCreditInTheGroupsCopiesHasItsDebitAndTheControlShowsTheAnomaly() throws {
        let bank = try TwoDatabaseBank()
        defer { bank.tearDown() }
        try bank.startWriter()

        var cuts: [(label: String, copies: (String, String))] = []
        for repetition in 1...Self.repetitions {
            let copies = (bank.copyPath("group\(repetition)-m1"), bank.copyPath("group\(repetition)-m2"))
            let results = bank.runGroup(copies: copies)
            for (index, result) in results.enumerated() {
                #expect(
                    result.status == 0,
                    "rep \(repetition) m\(index + 1): exit \(result.status): \(result.stdout.suffix(3000)) \(result.stderr.suffix(1000))"
                )
                #expect(result.report?.group?.consistency == .application, "rep \(repetition) m\(index + 1)")
            }
            cuts.append(("group \(repetition)", copies))
            usleep(300_000)
        }

        // The control: each database on its own, a second apart, debits' side first.
        let control = (bank.copyPath("control-m1"), bank.copyPath("control-m2"))
        let first = bank.runAlone(member: 0, copy: control.0)
        usleep(1_000_000)
        let second = bank.runAlone(member: 1, copy: control.1)
        #expect(
            first.status == 0 && second.status == 0,
            "control: \(first.stdout.suffix(1500)) \(second.stdout.suffix(1500))")
        bank.stopWriter()
        #expect(bank.writerErrors.isEmpty, "the writer failed: \(bank.writerErrors)")

        print("cut        debits  credits  credits-without-debit  in-flight  money")
        for cut in cuts {
            let state = try bank.restore(cut.copies)
            print(state.line(cut.label))
            #expect(
                state.creditsWithoutDebit.isEmpty,
                "\(cut.label): \(state.creditsWithoutDebit.count) credits without their debit, e.g. \(state.creditsWithoutDebit.sorted().prefix(5))"
            )
            #expect(state.moneyAddsUp, "\(cut.label): \(state.line(cut.label))")
            #expect(state.credits.count > 0, "\(cut.label): no transfer in the cut")
        }
        let anomaly = try bank.restore(control)
        print(anomaly.line("control"))
        #expect(
            !anomaly.creditsWithoutDebit.isEmpty,
            "the control shows no credit without its debit: the check would not see an inconsistent cut")
    }
}

/// What a restored pair of copies holds.
struct RestoredBank {
    var debits: Set<Int64>
    var mariaBalance: Int64
    var credits: Set<Int64>
    var ledgerBalance: Int64

    var creditsWithoutDebit: Set<Int64> { credits.subtracting(debits) }
    var inFlight: Int { debits.subtracting(credits).count }

    /// Each database agrees with itself, and no money was made: what left MariaDB is in
    /// PostgreSQL or on its way (debited, not yet credited).
    var moneyAddsUp: Bool {
        mariaBalance == TwoDatabaseBank.initialBalance - Int64(debits.count) && ledgerBalance == Int64(credits.count)
            && mariaBalance + ledgerBalance + Int64(inFlight) == TwoDatabaseBank.initialBalance
    }

    func line(_ label: String) -> String {
        func pad(_ text: String, _ width: Int) -> String {
            text + String(repeating: " ", count: max(0, width - text.count))
        }
        return pad(label, 11) + pad(String(debits.count), 8) + pad(String(credits.count), 9)
            + pad(String(creditsWithoutDebit.count), 23)
            + pad(String(inFlight), 11) + (moneyAddsUp ? "adds up" : "DOES NOT ADD UP")
    }
}

/// The two databases on members 1 and 2 of a three-member group, their plugins, and the writer.
final class TwoDatabaseBank {
    static let initialBalance: Int64 = 1_000_000_000

    let rig: GroupRig
    var maria: MariaDBInstance?
    var mariaImage = ""
    var pgFilesystem: LoopFilesystem?
    var pg: PostgresServer?
    var writer: ChildProcess?
    let scratch = Scratch("bank")
    private(set) var writerErrors = ""

    var pgDirectory: String { (pgFilesystem?.mountPoint ?? "") + "/pg" }

    init() throws {
        rig = try GroupRig()
        let m1 = rig.machines[0]
        let m2 = rig.machines[1]
        let mariaDirectory = m1.host.scratch.mkdir("maria")
        let mariaFS = try mariadbFilesystem(in: m1.host.scratch, directory: mariaDirectory)
        mariaImage = mariaFS.image
        let maria = try MariaDBInstance(directory: mariaDirectory, keeping: mariaFS)
        self.maria = maria
        _ = try maria.query(
            """
            CREATE DATABASE bank;
            CREATE TABLE bank.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB;
            INSERT INTO bank.accounts VALUES (1, \(Self.initialBalance));
            CREATE TABLE bank.debits (id BIGINT PRIMARY KEY, amount INT NOT NULL) ENGINE=InnoDB;
            """)

        let pgFS = try LoopFilesystem(in: m2.host.scratch, name: "pgdata", sizeMB: 1024)
        pgFilesystem = pgFS
        sh("chmod 755 '\(pgFS.mountPoint)'")
        let pg = try PostgresServer(directory: pgFS.mountPoint + "/pg")
        self.pg = pg
        _ = try pg.psql(
            """
            CREATE TABLE ledger_credits (id bigint PRIMARY KEY, amount int NOT NULL);
            CREATE TABLE ledger_balance (id int PRIMARY KEY, balance bigint NOT NULL);
            INSERT INTO ledger_balance VALUES (1, 0)
            """)

        // The bundled plugins, installed as an admin would; the members reach the servers through
        // their unix sockets (the members live in network namespaces of their own).
        let buildDirectory = String(pluginhostBinary.dropLast("pluginhost".count))
        for (machine, name, config) in [
            (m1, "mysql", "{\"socket\": \"\(maria.socket)\"}"),
            (
                m2, "postgresql",
                "{\"conninfo\": \"host=\(pgDirectory)/run port=\(pg.port) user=postgres dbname=postgres\", \"mode\": \"checkpoint\"}"
            ),
        ] {
            let library = machine.host.libraryDirectory + "/libpluginhost-\(name).so"
            guard sh("install -m 0755 '\(buildDirectory)libpluginhost-\(name).so' '\(library)'") == 0 else {
                throw FixtureError("build the package first: no \(buildDirectory)libpluginhost-\(name).so")
            }
            let added = machine.host.addPlugin(library, name: name, order: 10, timeout: 30, config: config)
            guard added.status == 0 else { throw FixtureError("plugin add \(name): \(added.stdout) \(added.stderr)") }
        }
    }

    deinit { tearDown() }

    func tearDown() {
        stopWriter()
        maria?.stop()
        maria = nil
        pg?.stop()
        pg = nil
        pgFilesystem = nil
    }

    func copyPath(_ name: String) -> String { scratch.path + "/\(name).img" }

    /// The freeze targets: each database's filesystem, and member 3's own.
    func mount(_ machine: GroupMachine) -> String {
        switch machine.id {
        case "m1": maria.map { $0.directory + "/data" } ?? ""
        case "m2": pgFilesystem?.mountPoint ?? ""
        default: machine.fs.mountPoint
        }
    }

    func image(_ machine: GroupMachine) -> String {
        machine.id == "m1" ? mariaImage : pgFilesystem?.image ?? ""
    }

    func startWriter() throws {
        let binary = scratch.path + "/transfer_writer"
        guard
            sh(
                "cc -O1 $(pkg-config --cflags libmariadb) $(pkg-config --cflags libpq) -o '\(binary)' '\(repositoryRoot)/Tests/Fixtures/transfer_writer.c' $(pkg-config --libs libmariadb) $(pkg-config --libs libpq)"
            ) == 0
        else {
            throw FixtureError("cannot build transfer_writer (libmariadb-dev, libpq-dev)")
        }
        guard let maria, let pg else { throw FixtureError("no servers") }
        let acks = scratch.path + "/acks"
        writer = try ChildProcess(
            spawning: Command(
                executable: binary, arguments: [maria.socket, pg.conninfo, "1", acks],
                environment: ["PATH": "/usr/bin:/bin"]))
        let limit = Monotonic.now() + 60_000_000_000
        while scratch.read("acks").split(separator: "\n").count < 50 {
            guard Monotonic.now() < limit,
                case .deadlineReached = writer!.wait(until: Monotonic.Instant.now + .milliseconds(50))
            else {
                throw FixtureError("the writer made no progress: \(writer!.stderrTail.text.suffix(1000))")
            }
        }
    }

    func stopWriter() {
        guard let writer else { return }
        if case .exited = writer.wait(until: .now) { writerErrors = writer.stderrTail.text }
        writer.terminateGroup(grace: .milliseconds(500))
        self.writer = nil
    }

    /// One group operation: members 1 and 2 copy their database's image while the whole group is
    /// frozen, member 3 takes nothing.
    func runGroup(copies: (String, String)) -> [Invocation] {
        rig.machines.map { machine -> RunningHost in
            let copy = machine.id == "m1" ? copies.0 : copies.1
            let snapshot =
                machine.id == "m3"
                ? machine.snapshotCommand()
                : machine.snapshotCommand("exec cp --sparse=always '\(image(machine))' '\(copy)'")
            return machine.start(
                [
                    "run", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
                    "--mount", mount(machine), "--max-frozen", "60",
                ]
                    + machine.groupArguments(group: rig.group, members: 3, timeout: 120) + ["--", snapshot])
        }.map { $0.finish() }
    }

    /// One member's operation on its own (no group).
    func runAlone(member index: Int, copy: String) -> Invocation {
        let machine = rig.machines[index]
        return machine.invoke([
            "run", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
            "--mount", mount(machine), "--max-frozen", "60", "--",
            machine.snapshotCommand("exec cp --sparse=always '\(image(machine))' '\(copy)'"),
        ])
    }

    /// Starts a MariaDB server on the first copy and a PostgreSQL server on the second, and reads
    /// what each holds.
    func restore(_ copies: (String, String)) throws -> RestoredBank {
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        let mariaDirectory = scratch.mkdir("maria-\(tag)")
        let debits: [[String]]
        let balance: [[String]]
        do {
            let mount = try MountedImage(image: copies.0, mountPoint: mariaDirectory + "/data")
            let server = try MariaDBInstance(directory: mariaDirectory, keeping: mount)
            defer { server.stop() }
            debits = try server.query("SELECT id FROM bank.debits")
            balance = try server.query("SELECT balance FROM bank.accounts WHERE id = 1")
        }
        let pgMount = try MountedImage(image: copies.1, mountPoint: scratch.path + "/pg-\(tag)")
        defer { pgMount.unmount() }
        let server = try PostgresServer(directory: pgMount.mountPoint + "/pg")
        defer { server.stop() }
        let credits = try server.psql("SELECT id FROM ledger_credits").split(separator: "\n").compactMap { Int64($0) }
        let ledger = try server.psql("SELECT balance FROM ledger_balance WHERE id = 1")
        return RestoredBank(
            debits: Set(debits.compactMap { $0.first.flatMap { Int64($0) } }),
            mariaBalance: balance.first?.first.flatMap { Int64($0) } ?? -1,
            credits: Set(credits), ledgerBalance: Int64(ledger) ?? -1)
    }
}
