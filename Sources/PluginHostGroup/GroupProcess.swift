import CPluginHostShim
import Glibc
public import PluginHostSupport
public import PluginHostWire

/// The group process (`pluginhost __group`): the one member of a consistency group that talks to
/// etcd, so that the host stays single-threaded and fork-safe. It speaks `GroupWire` with its
/// host over descriptor 3 and follows etcd's own recipes:
///
/// - **Liveness**: a lease per member (its keys die with it), kept alive every TTL/3 while it
///   takes part; a second lease per operation, kept alive by every member, holds the group's
///   name (`/pluginhost/groups/NAME/active`) until the last member is gone.
/// - **Barriers** (etcd's double barrier): a member arrives by putting its key (its state) under
///   `…/OPERATION/arrive/STAGE/` and counting the keys there in the same transaction; whoever
///   counts them all puts `…/ctl/passed/STAGE`, which every member sees on its watch: one
///   transaction per member and one small event to each, whatever the group's size. The states
///   are read once, when a member leaves (outside the freeze window).
///
/// Keys that must outlive the member that wrote them (arrivals, barriers passed) hang on the
/// operation's lease; a member's own keys (`member/ID`, `ctl/abort/ID`, `ctl/left/ID`) on its own.
/// - **Failure**: one watch on `…/ctl/` and `…/member/` (never polling): a `ctl/abort/ID` from a
///   member that failed, or the deletion of a member's key (its lease expired: it died or lost
///   its network) without a `ctl/left/ID` first, breaks the group at once.
///
/// Everything of an operation lives under `/pluginhost/groups/NAME/OPERATION/`, and its keys are
/// all attached to leases: the last member out deletes the prefix and revokes the group's lease,
/// and when members die instead, etcd removes their keys when the leases expire.
public enum GroupProcess {
    /// The group process's end of the socketpair, as the host maps it.
    public static let socketDescriptor: Int32 = 3
    public static let keyRoot = "/pluginhost/groups/"

    public struct Settings: Sendable {
        public var endpoints: [EtcdEndpoint]
        public var caFile: String?
        public var certFile: String?
        public var keyFile: String?
        public var ttlSeconds: Int

        public init(endpoints: [EtcdEndpoint], caFile: String?, certFile: String?, keyFile: String?, ttlSeconds: Int) {
            self.endpoints = endpoints
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
            self.ttlSeconds = ttlSeconds
        }

        var tls: TLSFiles? { caFile.map { TLSFiles(caFile: $0, certFile: certFile, keyFile: keyFile) } }

        /// One request on one endpoint: two thirds of the TTL (at least 1 s). A request that
        /// takes longer is as good as lost: the keep-alive it held up would come too late, and
        /// the member must be taken for gone — by itself too, while its lease may still run.
        var requestTimeout: Duration { .seconds(clamping: max(1.0, Double(ttlSeconds) * 2 / 3)) }
    }

    /// Serves the host until it leaves or goes away; returns the exit status.
    public static func run(settings: Settings) -> Int32 {
        _ = ph_signal_ignore(SIGPIPE)
        for signal in [SIGTERM, SIGINT, SIGHUP] { _ = ph_signal_ignore(signal) }  // the host decides when we leave
        let member = GroupMembership(settings: settings, socket: FileDescriptor(owning: socketDescriptor))
        return member.serve()
    }

    /// `pluginhost status`: the running operation of `group`, as JSON (or an error object).
    public static func query(settings: Settings, group: String) -> JSONValue {
        let client = EtcdClient(
            endpoints: settings.endpoints, tls: settings.tls, requestTimeout: settings.requestTimeout)
        do {
            let active = try client.range(keyRoot + group + "/active")
            guard let current = active.kvs.first, let value = try? JSONParser.parse(current.value),
                case .string(let operation)? = value["operation"]
            else {
                return .object([("group", .string(group)), ("active", .bool(false))])
            }
            let prefix = keyRoot + group + "/" + operation + "/"
            let keys = try client.range(prefix, end: EtcdClient.prefixEnd(prefix)).kvs
            let latest = GroupMembership.latestStates(keys, prefix: prefix)
            var aborted: [(key: String, value: JSONValue)] = []
            for kv in keys where kv.key.dropFirst(prefix.count).hasPrefix("ctl/abort/") {
                aborted.append((String(kv.key.dropFirst(prefix.count + 10)), .string(kv.text)))
            }
            return .object([
                ("group", .string(group)), ("active", .bool(true)), ("operationID", .string(operation)),
                ("members", value["members"] ?? .null),
                ("joined", .array(latest.values.sorted { $0.member < $1.member }.map(\.json))),
                ("aborted", .object(aborted)),
            ])
        } catch {
            return .object([("group", .string(group)), ("error", .string(error.message))])
        }
    }
}

/// One member's part in one group operation (the state of the group process).
final class GroupMembership {
    private let settings: GroupProcess.Settings
    private let socket: FileDescriptor
    private let client: EtcdClient

    private var group = ""
    private var me = ""
    private var memberCount = 0
    private var operationID = ""
    private var lease: Int64 = 0
    private var leaseTTL = 0
    private var groupLease: Int64 = 0
    private var watch: EtcdWatch?
    private var lastState: GroupMemberState?

    /// What is known of every member: its latest state.
    private var latest: [String: GroupMemberState] = [:]
    private var present: Set<String> = []
    private var departed: Set<String> = []
    private var passed: [GroupStage: [GroupMemberState]] = [:]
    private var waitingFor: GroupStage?
    private var broken: GroupEvent?
    private var aborted = false
    private var nextKeepAlive: Monotonic.Instant = .max

    init(settings: GroupProcess.Settings, socket: FileDescriptor) {
        self.settings = settings
        self.socket = socket
        client = EtcdClient(endpoints: settings.endpoints, tls: settings.tls, requestTimeout: settings.requestTimeout)
    }

    private var root: String { GroupProcess.keyRoot + group + "/" }
    private var activeKey: String { root + "active" }
    private var prefix: String { root + operationID + "/" }
    private func memberKey(_ id: String) -> String { prefix + "member/" + id }
    private func arrivePrefix(_ stage: GroupStage) -> String { prefix + "arrive/" + stage.rawValue + "/" }
    private func passedKey(_ stage: GroupStage) -> String { prefix + "ctl/passed/" + stage.rawValue }
    private func abortKey(_ id: String) -> String { prefix + "ctl/abort/" + id }
    private func leftKey(_ id: String) -> String { prefix + "ctl/left/" + id }

    /// Every member's latest state among the keys of an operation (`member/`, `arrive/`, `ctl/left/`).
    static func latestStates(_ keys: [EtcdKeyValue], prefix: String) -> [String: GroupMemberState] {
        var latest: [String: GroupMemberState] = [:]
        for kv in keys {
            let rest = kv.key.dropFirst(prefix.count)
            guard rest.hasPrefix("member/") || rest.hasPrefix("arrive/") || rest.hasPrefix("ctl/left/"),
                let json = try? JSONParser.parse(kv.value), let state = GroupMemberState(json: json)
            else { continue }
            if let known = latest[state.member], rank(known.state) >= rank(state.state) { continue }
            latest[state.member] = state
        }
        return latest
    }

    /// The order of states, for "the latest known".
    static func rank(_ state: String) -> Int {
        switch state {
        case "joined": 0
        case GroupStage.quiesced.rawValue: 1
        case GroupStage.frozen.rawValue: 2
        case GroupStage.snapshotted.rawValue: 3
        default: 4  // final: succeeded, degraded, failed
        }
    }

    // MARK: - The loop

    func serve() -> Int32 {
        var input = [UInt8](repeating: 0, count: GroupWire.maximumMessage)
        while true {
            var fds = [PollEntry(socket.rawValue)]
            if let watch { fds.append(PollEntry(watch.descriptor)) }
            let timeout =
                watch?.hasBufferedEvents == true
                ? 0 : Monotonic.pollTimeout(until: nextKeepAlive == .max ? nil : nextKeepAlive)
            do {
                try Poll.wait(&fds, timeoutMilliseconds: timeout)
            } catch let error where error.errno == EINTR {
                continue
            } catch {}

            if fds[0].isReady {
                guard case .message(let count)? = try? socket.receiveMessage(into: &input, wait: true) else {
                    hostGone()
                    return 0
                }
                guard let request = GroupWire.decodeRequest(input.prefix(count)) else {
                    hostGone()
                    return 2
                }
                if handle(request) { return 0 }
            }
            if let watch,
                (fds.count > 1 && fds[1].descriptor == watch.descriptor && fds[1].isReady) || watch.hasBufferedEvents
            {
                receiveEvents()
            }
            if Monotonic.Instant.now >= nextKeepAlive { keepAlive() }
        }
    }

    /// Returns true when the process should exit.
    private func handle(_ request: GroupRequest) -> Bool {
        switch request {
        case .join(let join):
            let event = self.join(join)
            send(event)
            if case .refused = event { return true }
        case .arrive(let stage, let state):
            arrive(stage, state)
        case .abort(let reason):
            abort(reason)
        case .leave(let state):
            send(leave(state))
            return true
        }
        return false
    }

    private func send(_ event: GroupEvent) {
        let bytes = GroupWire.encode(event)
        try? socket.sendMessage(bytes)
    }

    /// The first break is the one the host hears of; later ones change nothing.
    private func breakGroup(_ kind: GroupBreak, member: String?, _ message: String) {
        guard broken == nil else { return }
        let event = GroupEvent.broken(kind, member: member, message: message)
        broken = event
        waitingFor = nil
        send(event)
    }

    // MARK: - Join

    private func join(_ request: GroupJoin) -> GroupEvent {
        group = request.group
        me = request.member
        memberCount = request.members
        lastState = request.state
        do {
            let granted = try client.grantLease(ttl: settings.ttlSeconds)
            lease = granted.id
            leaseTTL = granted.ttl
            for _ in 0..<5 {
                if let event = try joinOnce(request) {
                    if case .refused = event { try? client.revoke(lease) }
                    return event
                }
            }
            try? client.revoke(lease)
            return .refused(.busy, message: "group \(group): its operation keeps changing; try again")
        } catch {
            if lease != 0 { try? client.revoke(lease, limit: Monotonic.Instant.now + settings.requestTimeout) }
            return .refused(.unreachable, message: "etcd: \(error.message)")
        }
    }

    /// One attempt; nil when the group's operation changed meanwhile (try again).
    private func joinOnce(_ request: GroupJoin) throws(EtcdError) -> GroupEvent? {
        let stateText = request.state.json.serialized()
        let active = try client.range(activeKey).kvs.first
        var startRevision: Int64
        var memberKVs: [EtcdKeyValue] = []
        if let active {
            guard let value = try? JSONParser.parse(active.value), case .string(let operation)? = value["operation"],
                case .number(let count)? = value["members"], let members = count.integerValue,
                let leaseID = EtcdClient.integer(value["lease"])
            else {
                return .refused(
                    .busy,
                    message:
                        "group \(group): \(activeKey) holds something that is not pluginhost's: \(active.text.prefix(120))"
                )
            }
            operationID = operation
            if members != memberCount {
                return .refused(
                    .busy,
                    message:
                        """
                        group \(group) is running operation \(operation) with \(members) members (this member was \
                        started with --members \(memberCount))
                        """
                )
            }
            let result = try client.txn(
                [
                    EtcdCompare(key: activeKey, createRevision: active.createRevision),
                    EtcdCompare(key: memberKey(me), createRevision: 0),
                ],
                success: [
                    .put(key: memberKey(me), value: stateText, lease: lease),
                    .range(key: prefix + "member/", end: EtcdClient.prefixEnd(prefix + "member/"), countOnly: false),
                    .range(key: prefix + "ctl/", end: EtcdClient.prefixEnd(prefix + "ctl/"), countOnly: false),
                ],
                failure: [
                    .range(key: activeKey, end: nil, countOnly: false),
                    .range(key: memberKey(me), end: nil, countOnly: false),
                ])
            guard result.ranges.count == 2 else { throw .server("etcd answered a transaction without its ranges") }
            if !result.succeeded {
                guard result.ranges[0].kvs.first?.createRevision == active.createRevision else { return nil }
                let holder = result.ranges[1].kvs.first.flatMap { try? JSONParser.parse($0.value) }.flatMap(
                    GroupMemberState.init(json:))
                return .refused(
                    .busy,
                    message: "group \(group): member \(me) is already in operation \(operation)"
                        + (holder.map { " (host \($0.host), its operation \($0.operationID))" } ?? ""))
            }
            memberKVs = result.ranges[0].kvs
            if let progressed = result.ranges[1].kvs.first {
                _ = try? client.txn([], success: [.deleteRange(key: memberKey(me), end: nil)], failure: [])
                let what = String(progressed.key.dropFirst(prefix.count))
                if what.hasPrefix("ctl/abort/") {
                    return .refused(
                        .failed,
                        message:
                            """
                            group \(group): its operation \(operation) has already failed: member \
                            \(what.dropFirst(10)): \(progressed.text)
                            """
                    )
                }
                return .refused(
                    .busy,
                    message: "group \(group) is running operation \(operation), which is past its start (\(what))")
            }
            let earlier = memberKVs.filter { $0.createRevision < result.revision }.count
            if earlier >= memberCount {
                _ = try? client.txn([], success: [.deleteRange(key: memberKey(me), end: nil)], failure: [])
                return .refused(
                    .busy,
                    message:
                        "group \(group) is running operation \(operation), which has all its \(memberCount) members")
            }
            groupLease = leaseID
            startRevision = result.revision + 1
        } else {
            let proposal = try client.grantLease(ttl: settings.ttlSeconds)
            operationID = request.proposedOperationID
            let activeValue = JSONValue.object([
                ("operation", .string(operationID)), ("members", .number(JSONNumber(memberCount))),
                ("lease", .string(String(proposal.id))),
            ]).serialized()
            let result = try client.txn(
                [EtcdCompare(key: activeKey, createRevision: 0)],
                success: [
                    .put(key: activeKey, value: activeValue, lease: proposal.id),
                    .put(key: memberKey(me), value: stateText, lease: lease),
                ],
                failure: [])
            guard result.succeeded else {
                try? client.revoke(proposal.id)
                return nil
            }
            groupLease = proposal.id
            startRevision = result.revision + 1
        }
        for kv in memberKVs {
            if let json = try? JSONParser.parse(kv.value), let state = GroupMemberState(json: json) {
                latest[state.member] = state
                present.insert(state.member)
            }
        }
        latest[me] = request.state
        present.insert(me)
        watch = try EtcdWatch(
            endpoint: client.endpoint, tls: settings.tls, key: prefix + "ctl/", end: prefix + "member0",
            startRevision: startRevision, deadline: Monotonic.Instant.now + settings.requestTimeout)
        nextKeepAlive = Monotonic.Instant.now + keepAliveInterval
        return .joined(operationID: operationID, members: latest.values.sorted { $0.member < $1.member })
    }

    private var keepAliveInterval: Duration { .seconds(max(leaseTTL, 1)) / 3 }

    // MARK: - Barriers

    private func arrive(_ stage: GroupStage, _ state: GroupMemberState) {
        lastState = state
        latest[me] = state
        if let broken {
            send(broken)
            return
        }
        if let states = passed[stage] {
            send(.passed(stage: stage, members: states))
            return
        }
        waitingFor = stage
        do throws(EtcdError) {
            let result = try client.txn(
                [],
                success: [
                    .put(key: arrivePrefix(stage) + me, value: state.json.serialized(), lease: groupLease),
                    .range(key: arrivePrefix(stage), end: EtcdClient.prefixEnd(arrivePrefix(stage)), countOnly: true),
                ],
                failure: [])
            guard let arrivals = result.ranges.first?.count else {
                throw EtcdError.server("etcd answered a transaction without its range")
            }
            if arrivals >= Int64(memberCount) {
                _ = try client.put(passedKey(stage), "{\"members\":\(arrivals)}", lease: groupLease)
                markPassed(stage)
            }
        } catch {
            breakGroup(.unreachable, member: nil, "etcd: \(error.message)")
        }
    }

    private func markPassed(_ stage: GroupStage) {
        guard passed[stage] == nil else { return }
        passed[stage] = []
        if waitingFor == stage && broken == nil {
            waitingFor = nil
            send(.passed(stage: stage, members: []))
        }
    }

    // MARK: - The watch

    private func receiveEvents() {
        guard let current = watch else { return }
        let events: [EtcdWatch.Event]
        do {
            events = try current.receive()
        } catch {
            resumeWatch(after: error, from: current)
            return
        }
        for event in events { apply(event) }
    }

    private func apply(_ event: EtcdWatch.Event) {
        guard event.kv.key.hasPrefix(prefix) else { return }
        let rest = String(event.kv.key.dropFirst(prefix.count))
        let state = (try? JSONParser.parse(event.kv.value)).flatMap(GroupMemberState.init(json:))
        if rest.hasPrefix("member/") {
            let id = String(rest.dropFirst(7))
            if event.deleted {
                present.remove(id)
                if id != me && !departed.contains(id) {
                    let host = latest[id].map { " (host \($0.host))" } ?? ""
                    breakGroup(
                        .memberLost, member: id,
                        "member \(id)\(host) is gone: its etcd lease ended without it leaving (it died, or lost its network)"
                    )
                }
            } else if let state {
                present.insert(id)
                if latest[id] == nil { latest[id] = state }
            }
        } else if rest.hasPrefix("ctl/passed/"), !event.deleted {
            guard let stage = GroupStage(rawValue: String(rest.dropFirst(11))) else { return }
            markPassed(stage)
        } else if rest.hasPrefix("ctl/abort/"), !event.deleted {
            let id = String(rest.dropFirst(10))
            if id != me { breakGroup(.memberAborted, member: id, "member \(id) failed: \(event.kv.text)") }
        } else if rest.hasPrefix("ctl/left/"), !event.deleted {
            let id = String(rest.dropFirst(9))
            departed.insert(id)
            if let state { latest[id] = state }
        }
    }

    /// The watch broke: resume it from the next revision on each endpoint in turn; if none
    /// answers, etcd is out of reach and the group is broken for this member.
    private func resumeWatch(after error: EtcdError, from old: EtcdWatch) {
        watch = nil
        var failures = [error.message]
        let start = old.revision + 1
        for offset in 1...settings.endpoints.count {
            let endpoint = settings.endpoints[
                ((settings.endpoints.firstIndex(of: old.connection.endpoint) ?? 0) + offset) % settings.endpoints.count]
            do {
                let resumed = try EtcdWatch(
                    endpoint: endpoint, tls: settings.tls, key: prefix + "ctl/", end: prefix + "member0",
                    startRevision: start, deadline: Monotonic.Instant.now + settings.requestTimeout)
                watch = resumed
                for event in resumed.early { apply(event) }
                return
            } catch {
                failures.append(error.message)
            }
        }
        breakGroup(
            .unreachable, member: nil,
            "lost the etcd watch and could not resume it: \(failures.joined(separator: "; "))")
    }

    // MARK: - Liveness

    private func keepAlive() {
        guard lease != 0 else {
            nextKeepAlive = .max
            return
        }
        nextKeepAlive = Monotonic.Instant.now + keepAliveInterval
        do {
            if try client.keepAlive(lease) <= 0 {
                breakGroup(.unreachable, member: nil, "this member's etcd lease \(lease) has expired")
            }
            if groupLease != 0 { _ = try client.keepAlive(groupLease) }
        } catch {
            breakGroup(.unreachable, member: nil, "etcd did not answer this member's keep-alive: \(error.message)")
        }
    }

    // MARK: - Leaving

    private func abort(_ reason: String) {
        guard !aborted, lease != 0 else { return }
        aborted = true
        do {
            _ = try client.put(abortKey(me), reason, lease: lease)
        } catch {
            breakGroup(.unreachable, member: nil, "etcd: \(error.message)")
        }
    }

    /// Says it leaves (so that the others do not take the lease's end for a death), revokes its
    /// lease, and, as the last member, removes the operation's prefix and the group's name.
    private func leave(_ state: GroupMemberState) -> GroupEvent {
        latest[me] = state
        var ended = false
        let limit = Monotonic.Instant.now + settings.requestTimeout * 2
        if lease != 0 {
            // Every member's state at the last barrier that passed (or as it joined), and the final
            // states of those who left: read before this member's keys go (the arrivals stay until
            // the last member leaves). Only those keys: the others may still be frozen, waiting
            // for their turn on a shared machine.
            let last = passed.keys.max()
            let states = last.map(arrivePrefix) ?? prefix + "member/"
            for from in [states, prefix + "ctl/left/"] {
                guard let keys = try? client.range(from, end: EtcdClient.prefixEnd(from), limit: limit).kvs else {
                    continue
                }
                for (member, known) in Self.latestStates(keys, prefix: prefix) where member != me {
                    if Self.rank(known.state) >= Self.rank(latest[member]?.state ?? "joined") { latest[member] = known }
                }
            }
            _ = try? client.txn(
                [], success: [.put(key: leftKey(me), value: state.json.serialized(), lease: lease)], failure: [],
                limit: limit)
            try? client.revoke(lease, limit: limit)
            lease = 0
            if let remaining = try? client.range(
                prefix + "member/", end: EtcdClient.prefixEnd(prefix + "member/"), limit: limit),
                remaining.kvs.isEmpty
            {
                _ = try? client.txn(
                    [], success: [.deleteRange(key: prefix, end: EtcdClient.prefixEnd(prefix))], failure: [],
                    limit: limit)
                if groupLease != 0 { try? client.revoke(groupLease, limit: limit) }
                ended = true
            }
        }
        watch = nil
        return .left(groupEnded: ended, members: latest.values.sorted { $0.member < $1.member })
    }

    /// The host closed its socket (it died, or was killed): tell the others at once, and leave.
    private func hostGone() {
        guard lease != 0 else { return }
        abort("the host process of member \(me) ended before the group did")
        _ = leave(
            lastState ?? GroupMemberState(member: me, operationID: "", host: "", consistency: "none", state: "failed"))
    }
}
