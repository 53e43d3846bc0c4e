public import PluginHostSupport

/// The messages between the host and its group process (`pluginhost __group`, the only code
/// that talks to etcd) over a SOCK_SEQPACKET socketpair on the group process's descriptor 3:
/// one JSON object per message, `{"op": …}` from the host and `{"msg": …}` back. Both ends are
/// this binary; anything that does not decode is a peer gone wrong. Closing the socket means
/// the host is gone: the group process tells the other members and leaves the group.
public enum GroupRequest: Sendable, Equatable {
    /// Join (or start) the group's operation; answers `joined` or `refused`.
    case join(GroupJoin)
    /// This member reached `stage` in `state`; answers `passed` once every member has, or
    /// `broken`.
    case arrive(stage: GroupStage, state: GroupMemberState)
    /// This member failed: every member rolls back. No answer.
    case abort(reason: String)
    /// This member is done (`state` is its final outcome): leave, and remove the group's state if
    /// it was the last. Answers `left`.
    case leave(state: GroupMemberState)
}

/// What a member needs to join: the group, who it is, and the operation id it proposes (the
/// first member's proposal becomes the group's operation id).
public struct GroupJoin: Sendable, Equatable {
    public var group: String
    public var member: String
    public var members: Int
    public var proposedOperationID: String
    public var state: GroupMemberState

    public init(group: String, member: String, members: Int, proposedOperationID: String, state: GroupMemberState) {
        self.group = group
        self.member = member
        self.members = members
        self.proposedOperationID = proposedOperationID
        self.state = state
    }
}

/// The barriers of a group operation, in order.
public enum GroupStage: String, Sendable, Equatable, CaseIterable, Codable, Comparable {
    /// Every member ran its pre-script and quiesced its plugins: each may freeze.
    case quiesced
    /// Every member is frozen: each may take its snapshot.
    case frozen
    /// Every member took its snapshot: each may thaw.
    case snapshotted

    public static func < (lhs: GroupStage, rhs: GroupStage) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// One member as the others see it: published when it joins, at every barrier, and when it leaves.
public struct GroupMemberState: Sendable, Equatable, Codable {
    public var member: String
    /// The member's own operation id (its report's).
    public var operationID: String
    /// The machine's host name.
    public var host: String
    /// What its snapshot is worth (so far, before the snapshot).
    public var consistency: String
    /// joined, quiesced, frozen, snapshotted, or at the end succeeded, degraded, failed.
    public var state: String

    public init(member: String, operationID: String, host: String, consistency: String, state: String) {
        self.member = member
        self.operationID = operationID
        self.host = host
        self.consistency = consistency
        self.state = state
    }

    public var json: JSONValue {
        .object([
            ("member", .string(member)), ("operationID", .string(operationID)), ("host", .string(host)),
            ("consistency", .string(consistency)), ("state", .string(state)),
        ])
    }

    public init?(json value: JSONValue) {
        guard case .object(let members) = value, members.count == 5,
            let member = GroupWire.string(value, "member"), GroupWire.isValidName(member),
            let operationID = GroupWire.string(value, "operationID"), let host = GroupWire.string(value, "host"),
            let consistency = GroupWire.string(value, "consistency"), let state = GroupWire.string(value, "state")
        else { return nil }
        self.init(member: member, operationID: operationID, host: host, consistency: consistency, state: state)
    }
}

/// What the group process tells the host.
public enum GroupEvent: Sendable, Equatable {
    /// Joined `operationID` (the group's), which `members` (including this one) have joined so far.
    case joined(operationID: String, members: [GroupMemberState])
    /// Not joined: nothing of this member is left in etcd.
    case refused(GroupRefusal, message: String)
    /// Every member reached `stage`; their states then.
    case passed(stage: GroupStage, members: [GroupMemberState])
    /// The group cannot go on: a member failed or is gone, or etcd cannot be reached.
    case broken(GroupBreak, member: String?, message: String)
    /// Left the group; `groupEnded` when this member removed the group's state, as the last one.
    case left(groupEnded: Bool, members: [GroupMemberState])
}

public enum GroupRefusal: String, Sendable, Equatable, CaseIterable {
    /// Another operation of this group runs (or this member id is taken in it).
    case busy
    /// etcd could not be reached, or answered with an error.
    case unreachable
    /// The group's operation has already failed (a member said so).
    case failed
}

public enum GroupBreak: String, Sendable, Equatable, CaseIterable {
    /// A member said it failed (its reason follows).
    case memberAborted = "member-aborted"
    /// A member's lease ended without it leaving: it died, or lost its network.
    case memberLost = "member-lost"
    /// etcd cannot be reached, or this member's own lease expired.
    case unreachable
}

public enum GroupWire {
    public static let maximumMessage = 1 << 20

    /// Group names and member ids: letters, digits, `.`, `_`, `-`; 1 to 64 characters (they
    /// become parts of etcd keys).
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64 && name != "." && name != ".."
            && name.utf8.allSatisfy {
                $0.isASCIIDigit || $0.isASCIILetter || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
                    || $0 == UInt8(ascii: "-")
            }
    }

    public static func encode(_ request: GroupRequest) -> [UInt8] {
        let members: [(key: String, value: JSONValue)]
        switch request {
        case .join(let join):
            members = [
                ("op", .string("join")), ("group", .string(join.group)), ("member", .string(join.member)),
                ("members", .number(JSONNumber(join.members))),
                ("proposedOperationID", .string(join.proposedOperationID)),
                ("state", join.state.json),
            ]
        case .arrive(let stage, let state):
            members = [("op", .string("arrive")), ("stage", .string(stage.rawValue)), ("state", state.json)]
        case .abort(let reason):
            members = [("op", .string("abort")), ("reason", .string(reason))]
        case .leave(let state):
            members = [("op", .string("leave")), ("state", state.json)]
        }
        return Array(JSONValue.object(members).serialized().utf8)
    }

    public static func encode(_ event: GroupEvent) -> [UInt8] {
        let members: [(key: String, value: JSONValue)]
        switch event {
        case .joined(let operationID, let states):
            members = [
                ("msg", .string("joined")), ("operationID", .string(operationID)),
                ("members", .array(states.map(\.json))),
            ]
        case .refused(let refusal, let message):
            members = [("msg", .string("refused")), ("reason", .string(refusal.rawValue)), ("text", .string(message))]
        case .passed(let stage, let states):
            members = [
                ("msg", .string("passed")), ("stage", .string(stage.rawValue)), ("members", .array(states.map(\.json))),
            ]
        case .broken(let kind, let member, let message):
            members = [
                ("msg", .string("broken")), ("reason", .string(kind.rawValue)),
                ("member", member.map(JSONValue.string) ?? .null),
                ("text", .string(message)),
            ]
        case .left(let groupEnded, let states):
            members = [
                ("msg", .string("left")), ("groupEnded", .bool(groupEnded)), ("members", .array(states.map(\.json))),
            ]
        }
        return Array(JSONValue.object(members).serialized().utf8)
    }

    public static func decodeRequest(_ bytes: some Collection<UInt8>) -> GroupRequest? {
        guard let value = try? JSONParser.parse(Array(bytes)), case .string(let op)? = value["op"] else { return nil }
        switch op {
        case "join":
            guard case .object(let fields) = value, fields.count == 6,
                let group = string(value, "group"), isValidName(group), let member = string(value, "member"),
                isValidName(member),
                case .number(let count)? = value["members"], let members = count.integerValue,
                (1...GroupWire.maximumMembers).contains(members),
                let proposed = string(value, "proposedOperationID"), isValidName(proposed),
                let state = value["state"].flatMap(GroupMemberState.init(json:))
            else { return nil }
            return .join(
                GroupJoin(group: group, member: member, members: members, proposedOperationID: proposed, state: state))
        case "arrive":
            guard let stage = string(value, "stage").flatMap(GroupStage.init(rawValue:)),
                let state = value["state"].flatMap(GroupMemberState.init(json:))
            else { return nil }
            return .arrive(stage: stage, state: state)
        case "abort":
            guard let reason = string(value, "reason") else { return nil }
            return .abort(reason: reason)
        case "leave":
            guard let state = value["state"].flatMap(GroupMemberState.init(json:)) else { return nil }
            return .leave(state: state)
        default:
            return nil
        }
    }

    public static func decodeEvent(_ bytes: some Collection<UInt8>) -> GroupEvent? {
        guard let value = try? JSONParser.parse(Array(bytes)), case .string(let kind)? = value["msg"] else {
            return nil
        }
        switch kind {
        case "joined":
            guard let id = string(value, "operationID"), isValidName(id), let states = memberStates(value["members"])
            else { return nil }
            return .joined(operationID: id, members: states)
        case "refused":
            guard let reason = string(value, "reason").flatMap(GroupRefusal.init(rawValue:)),
                let text = string(value, "text")
            else { return nil }
            return .refused(reason, message: text)
        case "passed":
            guard let stage = string(value, "stage").flatMap(GroupStage.init(rawValue:)),
                let states = memberStates(value["members"])
            else { return nil }
            return .passed(stage: stage, members: states)
        case "broken":
            guard let reason = string(value, "reason").flatMap(GroupBreak.init(rawValue:)),
                let text = string(value, "text")
            else { return nil }
            switch value["member"] {
            case .null?: return .broken(reason, member: nil, message: text)
            case .string(let member)? where isValidName(member): return .broken(reason, member: member, message: text)
            default: return nil
            }
        case "left":
            guard case .bool(let ended)? = value["groupEnded"], let states = memberStates(value["members"]) else {
                return nil
            }
            return .left(groupEnded: ended, members: states)
        default:
            return nil
        }
    }

    /// The most members a group may have.
    public static let maximumMembers = 256

    /// A JSON array of member states (nil if any is malformed).
    public static func memberStates(_ value: JSONValue?) -> [GroupMemberState]? {
        guard case .array(let items)? = value else { return nil }
        let states = items.compactMap(GroupMemberState.init(json:))
        return states.count == items.count ? states : nil
    }

    static func string(_ object: JSONValue, _ key: String) -> String? {
        if case .string(let text)? = object[key] { return text }
        return nil
    }
}
