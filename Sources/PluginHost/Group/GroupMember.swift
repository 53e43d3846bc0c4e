import Glibc
public import PluginHostSupport
public import PluginHostWire

/// This machine's part in a consistency group (README, "Consistency groups"): the host's handle
/// on its group process (`pluginhost __group`, the only code that talks to etcd, so that the
/// host keeps one thread and can fork its workers), and the group's record for the report.
///
/// `join` before anything runs; `barrier` at each of the sequence's barriers; watch
/// `eventDescriptor` while frozen (readable when the group breaks: `collectBreak`); `abort`
/// when this member fails; `leave` at the end.
public final class GroupMember {
    public let settings: GroupSettings
    public private(set) var record: GroupRecord
    private let process: ChildProcess
    private let socket: FileDescriptor
    private let operationID: String
    private let operationStart: Monotonic.Instant
    private let hostName: String
    private let statusFile: String
    private var broken: HostError?
    private var aborted = false
    private var left = false
    /// When "all quiesced" passed: the freeze starts right after, so the freeze deadline counts from here.
    private var quiescedAt: Monotonic.Instant?
    private let maxFrozenSeconds: Double
    /// Allocated once: nothing big is allocated while frozen.
    private var receiveBuffer = [UInt8](repeating: 0, count: GroupWire.maximumMessage)

    /// Readable when the group process has something to say on its own (the group broke), or died.
    public var eventDescriptor: Int32 { socket.rawValue }

    private init(
        settings: GroupSettings, process: ChildProcess, socket: FileDescriptor, operationID: String,
        operationStart: Monotonic.Instant, maxFrozenSeconds: Double, statusFile: String
    ) {
        self.settings = settings
        self.process = process
        self.socket = socket
        self.operationID = operationID
        self.operationStart = operationStart
        self.maxFrozenSeconds = maxFrozenSeconds
        self.statusFile = statusFile
        hostName = Self.hostName()
        record = GroupRecord(
            name: settings.name, member: settings.member, members: settings.members, operationID: nil,
            etcd: settings.endpoints.map(\.description), ttlSeconds: settings.ttlSeconds, outcome: "joining",
            originMonotonicNs: operationStart.nanoseconds)
    }

    deinit {
        socket.close()
        _ = process.wait(until: Monotonic.Instant.now + .seconds(3))
    }

    /// Starts the group process and joins the group's operation (or starts it). Fails with
    /// `OperationBusy` when another operation of the group runs, `GroupCoordinatorUnreachable`
    /// when etcd does not answer; the record says which in both cases.
    public static func join(
        settings: GroupSettings, executable: String, operationID: String, operationStart: Monotonic.Instant,
        maxFrozenSeconds: Double, paths: StatePaths
    ) -> (member: GroupMember?, record: GroupRecord, error: HostError?) {
        var failed = GroupRecord(
            name: settings.name, member: settings.member, members: settings.members, operationID: nil,
            etcd: settings.endpoints.map(\.description), ttlSeconds: settings.ttlSeconds, outcome: "unreachable",
            originMonotonicNs: operationStart.nanoseconds)
        let socket: FileDescriptor
        let childEnd: FileDescriptor
        do {
            (socket, childEnd) = try FileDescriptor.messageSocketPair()
        } catch {
            return (
                nil, failed,
                HostError(
                    .groupCoordinatorUnreachable, "cannot create the group process's socket: \(error)", step: "group")
            )
        }
        let process: ChildProcess
        do {
            // It outlives a host that is killed just long enough to tell the others and leave.
            process = try ChildProcess(
                spawning: Command(
                    executable: executable, arguments: settings.processArguments,
                    environment: ["PATH": ScriptRunner.searchPath, "LANG": "C", "SWIFT_BACKTRACE": "enable=no"]),
                extraDescriptors: [childEnd.rawValue], outlivesHost: true)
        } catch {
            return (
                nil, failed,
                HostError(.groupCoordinatorUnreachable, "cannot start the group process: \(error)", step: "group")
            )
        }
        childEnd.close()
        let member = GroupMember(
            settings: settings, process: process, socket: socket, operationID: operationID,
            operationStart: operationStart, maxFrozenSeconds: maxFrozenSeconds,
            statusFile: paths.runDirectory + "/group.json")
        member.send(
            .join(
                GroupJoin(
                    group: settings.name, member: settings.member, members: settings.members,
                    proposedOperationID: operationID, state: member.state("joined", consistency: .none))))
        // Joining takes a few round trips; bounded by the requests' own timeouts, with room.
        switch member.receive(until: Monotonic.Instant.now + .seconds(settings.ttlSeconds * 4 + 20)) {
        case .event(.joined(let groupOperationID, let states))?:
            member.record.operationID = groupOperationID
            member.record.outcome = "joined"
            member.merge(states)
            member.writeStatusFile()
            return (member, member.record, nil)
        case .event(.refused(let reason, let message))?:
            failed.outcome = reason.rawValue
            let code: ErrorCode =
                switch reason {
                case .busy: .operationBusy
                case .unreachable: .groupCoordinatorUnreachable
                case .failed: .groupMemberFailed
                }
            return (nil, failed, HostError(code, message, step: "group"))
        default:
            process.terminateGroup(grace: .zero)
            return (
                nil, failed,
                HostError(
                    .groupCoordinatorUnreachable,
                    "the group process did not join (\(process.stderrTail.text.trimmingCharacters(in: " \n")))",
                    step: "group")
            )
        }
    }

    /// A member whose checks failed still tells the group at once (joining to say so), so that
    /// the others roll back now rather than at their barrier's timeout.
    public static func announceFailedChecks(
        settings: GroupSettings, executable: String, operationID: String, operationStart: Monotonic.Instant,
        paths: StatePaths, reason: String
    ) -> GroupRecord {
        let joined = join(
            settings: settings, executable: executable, operationID: operationID, operationStart: operationStart,
            maxFrozenSeconds: FreezeGuard.defaultDeadlineSeconds, paths: paths)
        guard let member = joined.member else { return joined.record }
        member.announceFailure(reason)
        member.record.outcome = "broken"
        member.record.brokenBy = reason
        return member.leave(result: "failed", consistency: .none)
    }

    // MARK: - Barriers

    public enum BarrierResult {
        case passed
        /// The group broke or timed out: every member rolls back.
        case failed(HostError)
        /// One of the caller's descriptors (a signal) became readable first.
        case interrupted
    }

    /// Arrives at `stage` with what the snapshot is worth so far, and waits for every other
    /// member (or a break, a signal on one of `watching`, or the barrier's limit).
    public func barrier(_ stage: GroupStage, consistency: ConsistencyLevel, watching: [Int32]) -> BarrierResult {
        let begin = Monotonic.Instant.now
        var entry = GroupRecord.Barrier(
            stage: stage.rawValue, startMs: (begin - operationStart).inMilliseconds,
            waitMs: 0, outcome: .broken)
        defer {
            entry.waitMs = (Monotonic.Instant.now - begin).inMilliseconds
            record.barriers.append(entry)
        }
        if let broken { return .failed(broken) }
        let limit = self.limit(for: stage, from: begin)
        send(.arrive(stage: stage, state: state(stage.rawValue, consistency: consistency)))
        while true {
            switch receive(until: limit, watching: watching) {
            case .event(.passed(let passedStage, let states))? where passedStage == stage:
                entry.outcome = .passed
                merge(states)
                if stage == .quiesced { quiescedAt = Monotonic.Instant.now }
                return .passed
            case .event(.broken(let kind, let member, let message))?:
                return .failed(noteBreak(kind, member: member, message))
            case .event?:
                continue  // nothing else is expected here; a late answer of an earlier stage
            case .readable?:
                entry.outcome = .interrupted
                return .interrupted
            case .closed?:
                return .failed(
                    noteBreak(
                        .unreachable, member: nil,
                        "the group process exited (\(process.stderrTail.text.trimmingCharacters(in: " \n")))"))
            case nil:
                entry.outcome = .timedOut
                let error = HostError(
                    .groupMemberFailed,
                    """
                    not every member of group \(settings.name) reached \"\(stage.rawValue)\" within \
                    \(formatSeconds((limit - begin).inMilliseconds / 1000)) s (waiting for \(missing(at: stage)))
                    """,
                    step: "group: all \(stage.rawValue)")
                broken = error
                record.outcome = "broken"
                record.brokenBy = error.message
                announceFailure(error.message)
                return .failed(error)
            }
        }
    }

    /// How long a barrier may wait: before the freeze the group's timeout; once frozen, never past
    /// this member's own freeze deadline (counted from "all quiesced", a little before the
    /// guard's own, so that the host gives up first).
    private func limit(for stage: GroupStage, from begin: Monotonic.Instant) -> Monotonic.Instant {
        let timeout = begin + .seconds(clamping: settings.timeoutSeconds)
        guard stage != .quiesced, let quiescedAt else { return timeout }
        let frozenLimit = quiescedAt + .seconds(clamping: maxFrozenSeconds)
        return stage == .frozen ? min(timeout, frozenLimit) : frozenLimit
    }

    private func missing(at stage: GroupStage) -> String {
        let arrived = Set(
            record.memberStates.filter { GroupStage(rawValue: $0.state).map { $0 >= stage } ?? false }.map(\.member))
        let known = record.memberStates.map(\.member).filter { !arrived.contains($0) && $0 != settings.member }
        let unknown = settings.members - record.memberStates.count
        var parts = known
        if unknown > 0 { parts.append("\(unknown) member\(unknown == 1 ? "" : "s") that never joined") }
        return parts.isEmpty ? "the others" : parts.joined(separator: ", ")
    }

    /// After `eventDescriptor` became readable: the error if the group broke (nil for anything else).
    public func collectBreak() -> HostError? {
        if let broken { return broken }
        switch receive(until: Monotonic.Instant.now) {
        case .event(.broken(let kind, let member, let message))?:
            return noteBreak(kind, member: member, message)
        case .closed?:
            return noteBreak(.unreachable, member: nil, "the group process exited")
        default:
            return nil
        }
    }

    private func noteBreak(_ kind: GroupBreak, member: String?, _ message: String) -> HostError {
        let error: HostError
        switch kind {
        case .memberAborted, .memberLost:
            error = HostError(
                .groupMemberFailed, "group \(settings.name): \(message); every member rolls back", step: "group")
        case .unreachable:
            error = HostError(
                .groupCoordinatorUnreachable, "group \(settings.name): \(message); this member rolls back",
                step: "group")
        }
        if broken == nil {
            broken = error
            record.outcome = "broken"
            record.brokenBy = error.message
        }
        if let member, let index = record.memberStates.firstIndex(where: { $0.member == member }) {
            record.memberStates[index].state = kind == .memberLost ? "gone" : "failed"
        }
        return broken!
    }

    /// This member failed: every member rolls back. Once only; not when the group already broke.
    public func announceFailure(_ reason: String) {
        guard !aborted, !left else { return }
        aborted = true
        if broken == nil { send(.abort(reason: reason)) }
    }

    /// The group's consistency once every member reached `stage`: the lowest of the members'.
    private func settleConsistency() {
        record.consistency = GroupRecord.lowest(
            record.memberStates.map { ConsistencyLevel(rawValue: $0.consistency) ?? .none })
    }

    /// Leaves the group with this member's final outcome; the group process removes the group's
    /// state if this is the last member. Returns the record for the report.
    public func leave(result: String, consistency: ConsistencyLevel) -> GroupRecord {
        guard !left else { return record }
        left = true
        send(.leave(state: state(result, consistency: consistency)))
        let limit = Monotonic.Instant.now + .seconds(settings.ttlSeconds * 2 + 10)
        while case .event(let event)? = receive(until: limit) {
            if case .left(let ended, let states) = event {
                record.removedGroupState = ended
                merge(states)
                break
            }
        }
        // Every member's latest state, this one's final one included: the lowest is the group's.
        if broken == nil && record.outcome == "completed" { settleConsistency() }
        if case .exited = process.wait(until: Monotonic.Instant.now + .seconds(2)) {
        } else {
            process.terminateGroup(grace: .zero)
        }
        try? FileSystem.remove(statusFile)
        return record
    }

    /// Marks the group complete: every barrier this member needs has passed.
    public func complete() {
        if broken == nil { record.outcome = "completed" }
    }

    public var isBroken: Bool { broken != nil }

    // MARK: - State

    private func state(_ name: String, consistency: ConsistencyLevel) -> GroupMemberState {
        GroupMemberState(
            member: settings.member, operationID: operationID, host: hostName, consistency: consistency.rawValue,
            state: name)
    }

    private func merge(_ states: [GroupMemberState]) {
        for state in states {
            let member = GroupRecord.Member(
                member: state.member, host: state.host, operationID: state.operationID,
                state: state.state, consistency: state.consistency)
            if let index = record.memberStates.firstIndex(where: { $0.member == state.member }) {
                record.memberStates[index] = member
            } else {
                record.memberStates.append(member)
            }
        }
        record.memberStates.sort { $0.member < $1.member }
    }

    /// `/run/pluginhost/group.json`, for `pluginhost status` (written before anything is frozen).
    private func writeStatusFile() {
        let document = JSONValue.object([
            ("group", .string(settings.name)), ("member", .string(settings.member)),
            ("members", .number(JSONNumber(settings.members))),
            ("operationID", .string(record.operationID ?? "")), ("localOperationID", .string(operationID)),
            ("arguments", .array(settings.processArguments.map(JSONValue.string))),
        ])
        try? writeFileAtomically(statusFile, Array(document.prettySerialized().utf8), mode: 0o600)
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - Socket

    private func send(_ request: GroupRequest) {
        let bytes = GroupWire.encode(request)
        try? socket.sendMessage(bytes)
    }

    private enum Received { case event(GroupEvent), readable(Int32), closed }

    /// The next event, a readable descriptor of `watching`, the socket's end — or nil at `deadline`.
    private func receive(until deadline: Monotonic.Instant, watching: [Int32] = []) -> Received? {
        while true {
            var fds = [PollEntry(socket.rawValue)] + watching.map { PollEntry($0) }
            if (try? Poll.wait(&fds, until: deadline)) == 0 { return nil }
            if fds[0].isReady {
                let received = try? socket.receiveMessage(into: &receiveBuffer, wait: false)
                if received == .wouldBlock { continue }
                guard case .message(let length)? = received,
                    let event = GroupWire.decodeEvent(receiveBuffer.prefix(length))
                else { return .closed }
                return .event(event)
            }
            if let other = fds.dropFirst().first(where: \.isReady) { return .readable(other.descriptor) }
        }
    }
}
