import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Three or more members, each its own pluginhost with its own run directory, loop filesystem and
/// network namespace (a veth link to the root namespace, where the test's etcd listens): what the
/// members say to etcd crosses a real link.
final class GroupRig {
    let namespaces: [NetworkNamespace]
    let etcd: EtcdServer
    let machines: [GroupMachine]
    let group: String

    init(members: Int = 3, tls: Bool = false) throws {
        group = "g" + String(UInt32.random(in: 0..<0x100_0000), radix: 16)
        namespaces = try (1...members).map { try NetworkNamespace(index: $0) }
        let gateways = namespaces.map(\.gateway)
        let certificates = tls ? try EtcdTLS(addresses: gateways) : nil
        etcd = try EtcdServer(listeningOn: gateways, tls: certificates)
        let etcd = self.etcd
        machines = try namespaces.enumerated().map { index, namespace in
            try GroupMachine(
                id: "m\(index + 1)", etcd: { $0.map { etcd.url($0.gateway) } ?? etcd.url() }, namespace: namespace)
        }
        self.certificates = certificates
    }

    let certificates: EtcdTLS?

    /// `run` on every member at once (each with `snapshot(machine)` as its snapshot command),
    /// returning the running hosts in member order.
    func startRun(
        extra: (GroupMachine) -> [String] = { _ in [] }, snapshot: (GroupMachine) -> String = { $0.snapshotCommand() },
        preExtra: (GroupMachine) -> String = { _ in "" }
    ) -> [RunningHost] {
        machines.map { machine in
            machine.start(
                [
                    "run", "--json", "--config", machine.config(preExtra: preExtra(machine)), "--plugins-dir",
                    machine.host.pluginsDirectory,
                    "--mount", machine.fs.mountPoint, "--max-frozen", "60",
                ]
                    + machine.groupArguments(group: group, members: machines.count) + extra(machine) + [
                        "--", snapshot(machine),
                    ])
        }
    }

    /// Nothing of the group is left in etcd.
    var etcdKeys: [String] { etcd.keys(under: "/pluginhost/groups/\(group)/") }
}

/// A step of a member's report on the machine-wide monotonic axis (ns).
private func span(_ report: OperationReport, _ name: String) -> (start: Double, end: Double)? {
    guard let origin = report.group?.originMonotonicNs, let step = report.steps.first(where: { $0.name == name }) else {
        return nil
    }
    let start = Double(origin) + step.startMs * 1e6
    return (start, start + step.durationMs * 1e6)
}

@Suite(
    "Consistency groups", .serialized,
    .enabled(if: isRoot, "needs root: loop mounts, FIFREEZE, network namespaces"),
    .enabled(
        if: etcdBinary != nil && etcdctlBinary != nil && ipBinary != nil, "needs etcd-server, etcd-client and iproute2")
)
struct GroupTests {
    @Test func threeMembersTakeOneCutAndLeaveNothingInEtcd() throws {
        let rig = try GroupRig()
        let results = rig.startRun().map { $0.finish() }
        let reports = try results.enumerated().map { index, result in
            #expect(
                result.status == 0,
                "m\(index + 1): exit \(result.status): \(result.stdout.suffix(3000)) \(result.stderr.suffix(2000))")
            return try #require(result.report, "m\(index + 1): no report: \(result.stderr)")
        }
        let operationIDs = Set(reports.compactMap { $0.group?.operationID })
        #expect(operationIDs.count == 1, "one group operation: \(operationIDs)")
        for (machine, report) in zip(rig.machines, reports) {
            let group = try #require(report.group)
            #expect(group.name == rig.group && group.member == machine.id && group.members == 3)
            #expect(group.outcome == "completed" && group.consistency == .application)
            #expect(group.memberStates.map(\.member) == ["m1", "m2", "m3"])
            #expect(
                group.barriers.map(\.stage) == ["quiesced", "frozen", "snapshotted"]
                    && group.barriers.allSatisfy { $0.outcome == .passed })
            #expect(
                report.steps.map(\.name) == [
                    "checks", "prepare", "pre-script", "flush", "quiesce", "group: all quiesced", "freeze",
                    "group: all frozen", "snapshot", "group: all snapshotted", "thaw", "post-script",
                ])
            #expect(
                machine.host.scratch.read("snapshot.env") == "\(rig.group) \(machine.id) \(operationIDs.first ?? "")\n")
            #expect(machine.host.scratch.read("phases.log") == "pre\npost success application\n")
        }
        // The barriers hold across machines: nobody froze before everyone had quiesced, nobody
        // took its snapshot before everyone was frozen, nobody thawed before every snapshot was taken.
        let quiesced = reports.compactMap { span($0, "quiesce")?.end }.max() ?? .infinity
        let frozen = reports.compactMap { span($0, "freeze")?.end }.max() ?? .infinity
        let snapshotted = reports.compactMap { span($0, "snapshot")?.end }.max() ?? .infinity
        for (machine, report) in zip(rig.machines, reports) {
            #expect(
                (span(report, "freeze")?.start ?? 0) >= quiesced, "\(machine.id) froze before every member had quiesced"
            )
            #expect(
                (span(report, "snapshot")?.start ?? 0) >= frozen,
                "\(machine.id) snapshotted before every member was frozen")
            #expect(
                (span(report, "thaw")?.start ?? 0) >= snapshotted,
                "\(machine.id) thawed before every snapshot was taken")
        }
        #expect(rig.etcdKeys.isEmpty, "left in etcd: \(rig.etcdKeys)")
        #expect(rig.etcd.etcdctl(["lease", "list"]).stdout.contains("found 0 leases"), "leases left in etcd")
    }

    @Test func aSecondOperationOfTheGroupIsBusyOnEveryMember() throws {
        let rig = try GroupRig()
        let release = rig.machines[0].host.scratch.path + "/release"
        let first = rig.startRun(snapshot: { $0.snapshotCommand("while [ ! -e '\(release)' ]; do sleep 0.05; done") })
        defer { _ = first.map { $0.finish(timeoutSeconds: 5) } }
        for machine in rig.machines { #expect(machine.waitForMarker(), "\(machine.id) never froze") }

        // The same group, three other members (other run directories, so that no machine lock is
        // what refuses them): each is refused by the group, and nothing of theirs runs.
        let second = try rig.machines.map { machine in
            try GroupMachine(id: machine.id, etcd: { _ in machine.etcdURL }, namespace: machine.namespace)
        }
        let busy = second.map { machine in
            machine.start(
                [
                    "run", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
                    "--mount", machine.fs.mountPoint,
                ] + machine.groupArguments(group: rig.group, members: 3)
                    + ["--", machine.snapshotCommand()])
        }.map { $0.finish() }
        for (machine, result) in zip(second, busy) {
            #expect(result.status == ExitStatus.busy.rawValue, "\(machine.id): \(result.stdout.suffix(2000))")
            let report = try #require(result.report)
            #expect(
                report.errors.map(\.code) == [.operationBusy]
                    && report.errors.first?.message.contains(rig.group) == true,
                "\(machine.id): \(report.errors)")
            #expect(report.group?.outcome == "busy")
            #expect(!machine.host.scratch.exists("phases.log"), "\(machine.id) ran its pre-script")
        }
        // The first operation is unaffected, and `status` shows the group and its members.
        let status = rig.machines[0].invoke(["status"])
        #expect(status.stdout.contains("Group \(rig.group): operation"), "\(status.stdout)")
        for id in ["m2", "m3"] { #expect(status.stdout.contains("  \(id)"), "status lacks \(id): \(status.stdout)") }
        let statusJSON = try #require(try? JSONParser.parse(rig.machines[0].invoke(["status", "--json"]).stdout))
        guard case .array(let joined)? = statusJSON["group"]?["joined"] else {
            Issue.record("no group in status --json")
            return
        }
        #expect(joined.count == 3)

        sh("touch '\(release)'")
        for (index, result) in first.map({ $0.finish() }).enumerated() {
            #expect(result.status == 0, "m\(index + 1): \(result.stdout.suffix(2000)) \(result.stderr.suffix(1000))")
        }
        #expect(rig.etcdKeys.isEmpty, "left in etcd: \(rig.etcdKeys)")
    }

    /// etcd with TLS and client certificates (`--client-cert-auth`): the members give the CA,
    /// their certificate and key (paths only). A key others can read is refused before anything
    /// runs; a member without a client certificate is refused by etcd and runs nothing.
    @Test func overTLSWithClientCertificates() throws {
        let rig = try GroupRig(tls: true)
        let pki = try #require(rig.certificates)
        let tls = ["--etcd-cacert", pki.caCert, "--etcd-cert", pki.clientCert, "--etcd-key", pki.clientKey]
        for (index, result) in rig.startRun(extra: { _ in tls }).map({ $0.finish() }).enumerated() {
            #expect(result.status == 0, "m\(index + 1): \(result.stdout.suffix(2000)) \(result.stderr.suffix(1000))")
            #expect(
                result.report?.group?.outcome == "completed"
                    && result.report?.group?.etcd.first?.hasPrefix("https://") == true)
        }
        #expect(rig.etcdKeys.isEmpty, "left in etcd: \(rig.etcdKeys)")

        let machine = rig.machines[0]
        func runAlone(_ extra: [String]) -> Invocation {
            machine.invoke(
                [
                    "run", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
                    "--mount", machine.fs.mountPoint,
                ] + machine.groupArguments(group: rig.group, members: 1) + extra
                    + ["--", machine.snapshotCommand()])
        }
        chmod(pki.clientKey, 0o644)
        let readable = runAlone(tls)
        chmod(pki.clientKey, 0o600)
        #expect(readable.status == ExitStatus.invalid.rawValue)
        #expect(
            readable.report?.errors.contains {
                $0.code == .incorrectPluginhostFile && $0.message.contains("etcd client key")
            } == true,
            "\(readable.stdout.suffix(2000))")

        unlink(machine.host.scratch.path + "/phases.log")
        let anonymous = runAlone(["--etcd-cacert", pki.caCert])
        #expect(anonymous.status == ExitStatus.failed.rawValue)
        #expect(
            anonymous.report?.errors.map(\.code) == [.groupCoordinatorUnreachable], "\(anonymous.stdout.suffix(2000))")
        #expect(!machine.host.scratch.exists("phases.log"), "a member that could not join ran its pre-script")
    }

    /// `check` with the group options asks etcd, as an operation would, and joins nothing.
    @Test func checkReachesEtcdWithoutJoining() throws {
        let rig = try GroupRig(members: 1)
        let machine = rig.machines[0]
        let base = [
            "check", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory, "--mount",
            machine.fs.mountPoint,
        ]
        let reachable = machine.invoke(base + machine.groupArguments(group: rig.group, members: 3))
        #expect(reachable.status == 0, "\(reachable.stdout.suffix(2000))")
        let result = try #require(try? JSONParser.parse(reachable.stdout))
        #expect(result["group"]?["reachable"] == .bool(true) && result["group"]?["runningOperation"] == nil)
        #expect(rig.etcdKeys.isEmpty, "check left keys in etcd: \(rig.etcdKeys)")

        let nowhere = machine.invoke(
            base + [
                "--group", rig.group, "--member", "m1", "--members", "3",
                "--etcd", "http://\(machine.namespace?.gateway ?? "127.0.0.1"):\(rig.etcd.clientPort + 7)",
            ])
        #expect(nowhere.status == ExitStatus.invalid.rawValue)
        #expect(nowhere.stdout.contains("GroupCoordinatorUnreachable"), "\(nowhere.stdout.suffix(2000))")
    }

    @Test func twoPhaseFreezesTheGroupThenEachMemberIsThawed() throws {
        let rig = try GroupRig()
        // Each `freeze` returns once every member is frozen.
        let notices = rig.machines.map { machine in
            machine.start(
                [
                    "freeze", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
                    "--mount", machine.fs.mountPoint, "--max-frozen", "60",
                ] + machine.groupArguments(group: rig.group, members: 3))
        }.map { $0.finish() }
        var operations: [String] = []
        for (machine, notice) in zip(rig.machines, notices) {
            #expect(notice.status == 0, "\(machine.id): \(notice.stdout) \(notice.stderr)")
            let value = try #require(try? JSONParser.parse(notice.stdout))
            #expect(value["state"] == .string("frozen"))
            #expect(value["group"]?["name"] == .string(rig.group))
            guard case .string(let id)? = value["operationID"] else {
                Issue.record("no operation id")
                return
            }
            operations.append(id)
        }
        // The backup service snapshots every disk now: all of them are frozen at once.
        let probes = try rig.machines.map { try $0.probe() }
        for machine in rig.machines {
            #expect(isFrozen(probing: machine.fs.mountPoint), "\(machine.id) is not frozen")
        }
        for (machine, id) in zip(rig.machines, operations) {
            let thaw = machine.invoke(["thaw", "--operation", id, "--json"])
            #expect(thaw.status == 0, "\(machine.id): \(thaw.stdout.suffix(2000))")
            let report = try #require(thaw.report)
            #expect(report.group?.outcome == "completed" && report.group?.consistency == .application)
            #expect(report.group?.barriers.map(\.stage) == ["quiesced", "frozen"])
        }
        for (machine, probe) in zip(rig.machines, probes) {
            #expect(probe.finishes(within: 10), "\(machine.id) is still frozen")
        }
        #expect(rig.etcdKeys.isEmpty, "left in etcd: \(rig.etcdKeys)")
    }
}
