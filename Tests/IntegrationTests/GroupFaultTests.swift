import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// What a consistency group does when a member dies, etcd goes away or a link is cut: every
/// member rolls back on its own, nothing stays frozen, and none waits for its freeze deadline
/// (60 s here, against a lease TTL of 3 s: a member that noticed nothing would end with
/// FreezeDeadlineExpired, thawed by its guard's deadline).
@Suite(
    "Consistency groups: faults", .serialized,
    .enabled(if: isRoot, "needs root: loop mounts, FIFREEZE, network namespaces"),
    .enabled(
        if: etcdBinary != nil && etcdctlBinary != nil && ipBinary != nil, "needs etcd-server, etcd-client and iproute2")
)
struct GroupFaultTests {
    static let hold = "exec sleep 300"

    /// m1 and m2 end failed with `code`, rolled back, thawed on command (when they froze).
    func expectRolledBack(
        _ rig: GroupRig, _ results: [Invocation], members: [Int], code: ErrorCode, naming: [String], froze: Bool
    ) throws {
        for index in members {
            let machine = rig.machines[index]
            let result = results[index]
            #expect(
                result.status == ExitStatus.failed.rawValue,
                "\(machine.id): exit \(result.status): \(result.stdout.suffix(3000)) \(result.stderr.suffix(1000))")
            let report = try #require(result.report, "\(machine.id): no report: \(result.stderr.suffix(2000))")
            #expect(
                report.errors.contains { $0.code == code && naming.allSatisfy($0.message.contains) },
                "\(machine.id): \(report.errors)")
            #expect(
                !report.errors.contains { $0.code == .freezeDeadlineExpired },
                "\(machine.id) waited for its freeze deadline")
            #expect(!report.snapshotTaken && report.group?.outcome == "broken")
            #expect(
                report.group?.barriers.contains { $0.outcome == .timedOut } == false,
                "\(machine.id) waited for a barrier's timeout")
            if froze {
                #expect(
                    report.freeze?.thawCause == .command,
                    "\(machine.id): thawed by \(report.freeze?.thawCause?.rawValue ?? "-")")
            } else {
                #expect(!report.steps.contains { $0.name == "freeze" }, "\(machine.id) froze")
            }
            #expect(
                machine.host.scratch.read("phases.log") == "pre\npost failure none\n",
                "\(machine.id): \(machine.host.scratch.read("phases.log"))")
        }
    }

    /// Nothing is frozen on any member: a write to each filesystem finishes.
    func expectNothingFrozen(_ rig: GroupRig) throws {
        for machine in rig.machines {
            #expect(try machine.probe().finishes(within: 10), "\(machine.id) is still frozen")
        }
    }

    /// etcd holds nothing of the group once its leases have expired (the TTL is 3 s).
    func expectEtcdEmpty(_ rig: GroupRig) {
        let limit = Monotonic.now() + 20_000_000_000
        var keys = rig.etcdKeys
        while !keys.isEmpty && Monotonic.now() < limit {
            usleep(250_000)
            keys = rig.etcdKeys
        }
        #expect(keys.isEmpty, "left in etcd: \(keys)")
    }

    @Test func aMemberKilledBeforeAllAreFrozenMakesEveryMemberRollBack() throws {
        let rig = try GroupRig()
        let marker = rig.machines[2].host.scratch.path + "/pre.marker"
        let running = rig.startRun(preExtra: { $0.id == "m3" ? "touch '\(marker)'\n\(Self.hold)" : "" })
        #expect(rig.machines[2].waitForMarker("pre.marker"))
        usleep(1_000_000)  // m1 and m2 are at the barrier by now (if not, they find the group broken there)
        running[2].killLikeADeadMachine()
        let results = running.map { $0.finish() }
        try expectRolledBack(
            rig, results, members: [0, 1], code: .groupMemberFailed, naming: ["member m3", "lease ended"], froze: false)
        for index in [0, 1] {
            #expect(results[index].report?.group?.barriers.first?.outcome == .broken)
        }
        try expectNothingFrozen(rig)
        expectEtcdEmpty(rig)
    }

    /// A member whose checks fail (here: a mount point that does not exist) joins only to say
    /// so: the others roll back at once instead of at their barrier's timeout.
    @Test func aMemberWhoseChecksFailMakesTheOthersRollBackAtOnce() throws {
        let rig = try GroupRig()
        let first = rig.machines.prefix(2).map { machine in
            machine.start(
                [
                    "run", "--json", "--config", machine.config(), "--plugins-dir", machine.host.pluginsDirectory,
                    "--mount", machine.fs.mountPoint,
                ] + machine.groupArguments(group: rig.group, members: 3)
                    + ["--", machine.snapshotCommand()])
        }
        for machine in rig.machines.prefix(2) {
            let limit = Monotonic.now() + 60_000_000_000
            while !machine.host.scratch.read("phases.log").hasPrefix("pre") && Monotonic.now() < limit {
                usleep(20_000)
            }
        }
        let m3 = rig.machines[2]
        let refused = m3.invoke(
            [
                "run", "--json", "--config", m3.config(), "--plugins-dir", m3.host.pluginsDirectory,
                "--mount", m3.host.scratch.path + "/no-such-mount",
            ] + m3.groupArguments(group: rig.group, members: 3)
                + ["--", m3.snapshotCommand()])
        #expect(refused.status == ExitStatus.invalid.rawValue, "\(refused.stdout.suffix(2000))")
        let results = first.map { $0.finish() } + [refused]
        try expectRolledBack(
            rig, results, members: [0, 1], code: .groupMemberFailed, naming: ["member m3 failed", "its checks failed"],
            froze: false)
        try expectNothingFrozen(rig)
        expectEtcdEmpty(rig)
    }

    @Test func aMemberKilledWhileAllAreFrozenMakesTheOthersThawWithinTheLease() throws {
        let rig = try GroupRig()
        let running = rig.startRun(snapshot: { $0.snapshotCommand($0.id == "m3" ? Self.hold : "") })
        for machine in rig.machines { #expect(machine.waitForMarker(), "\(machine.id) never took its snapshot") }
        running[2].killLikeADeadMachine()
        let results = running.map { $0.finish() }
        try expectRolledBack(
            rig, results, members: [0, 1], code: .groupMemberFailed, naming: ["member m3", "lease ended"], froze: true)
        for index in [0, 1] {
            #expect(
                results[index].report?.group?.barriers.last.map { $0.stage == "snapshotted" && $0.outcome == .broken }
                    == true)
        }
        try expectNothingFrozen(rig)
        expectEtcdEmpty(rig)
    }

    /// Only the host dies (its group process lives on for a moment): the group process says so
    /// at once, without waiting for the lease to end.
    @Test func aMemberWhoseHostDiesTellsTheOthersAtOnce() throws {
        let rig = try GroupRig()
        let running = rig.startRun(snapshot: { $0.snapshotCommand($0.id == "m3" ? Self.hold : "") })
        for machine in rig.machines { #expect(machine.waitForMarker(), "\(machine.id) never took its snapshot") }
        kill(running[2].pid, SIGKILL)
        let results = running.map { $0.finish() }
        try expectRolledBack(
            rig, results, members: [0, 1], code: .groupMemberFailed, naming: ["member m3 failed", "host process"],
            froze: true)
        try expectNothingFrozen(rig)
        expectEtcdEmpty(rig)
    }

    @Test func etcdStoppedMidOperationEndsEveryMemberWithinItsDeadline() throws {
        let rig = try GroupRig()
        let running = rig.startRun(snapshot: { $0.snapshotCommand($0.id == "m3" ? Self.hold : "") })
        for machine in rig.machines { #expect(machine.waitForMarker(), "\(machine.id) never took its snapshot") }
        rig.etcd.kill()
        let results = running.map { $0.finish() }
        try expectRolledBack(
            rig, results, members: [0, 1, 2], code: .groupCoordinatorUnreachable, naming: [], froze: true)
        // m3's snapshot command was stopped: its snapshot would not belong to a whole cut.
        #expect(results[2].report?.snapshot?.termination != .exited(0))
        try expectNothingFrozen(rig)
    }

    @Test func aCutLinkBehavesLikeADeadMember() throws {
        let rig = try GroupRig()
        let running = rig.startRun(snapshot: { $0.snapshotCommand($0.id == "m3" ? Self.hold : "") })
        for machine in rig.machines { #expect(machine.waitForMarker(), "\(machine.id) never took its snapshot") }
        rig.namespaces[2].cut()
        let results = running.map { $0.finish() }
        // The others see m3's lease end; m3 cannot reach etcd and rolls back by itself.
        try expectRolledBack(
            rig, results, members: [0, 1], code: .groupMemberFailed, naming: ["member m3", "lease ended"], froze: true)
        try expectRolledBack(rig, results, members: [2], code: .groupCoordinatorUnreachable, naming: [], froze: true)
        try expectNothingFrozen(rig)
        expectEtcdEmpty(rig)
    }
}
