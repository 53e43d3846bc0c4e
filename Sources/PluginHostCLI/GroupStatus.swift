import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire

/// What `pluginhost status` shows of the running operation's consistency group: the group's
/// operation in etcd and every member's latest state, asked of etcd through the group process
/// (`pluginhost __group --query`), with the settings the operation wrote into `group.json`.
struct GroupStatus: Encodable {
    struct Member: Encodable {
        var member: String
        var host: String
        var operationID: String
        var state: String
        var consistency: String
    }

    var group: String
    var member: String
    var members: Int
    var operationID: String
    /// Every member that has joined, with its latest state; `failed` names those that said so.
    var joined: [Member] = []
    var failed: [String: String] = [:]
    /// Why etcd could not tell (the group is then shown from the local file only).
    var error: String?

    /// The group of the running operation `operationID` (nil when it is in none, or the file is
    /// a dead operation's).
    static func query(paths: StatePaths, operationID localOperationID: String) -> GroupStatus? {
        guard let file = try? FileDescriptor.open(paths.runDirectory + "/group.json", O_RDONLY | O_NOFOLLOW),
            let bytes = try? file.readAll(limit: 1 << 20), let document = try? JSONParser.parse(bytes),
            case .string(let group)? = document["group"], case .string(let member)? = document["member"],
            case .number(let count)? = document["members"], let members = count.integerValue,
            case .string(let operationID)? = document["operationID"], case .array(let items)? = document["arguments"],
            document["localOperationID"] == .string(localOperationID)
        else { return nil }
        var status = GroupStatus(group: group, member: member, members: members, operationID: operationID)
        let arguments = items.compactMap { item -> String? in if case .string(let text) = item { text } else { nil } }
        guard arguments.first == "__group" else { return status }
        guard let value = ask(arguments + ["--query", group]) else {
            status.error = "the group process gave no answer"
            return status
        }
        if case .string(let message)? = value["error"] {
            status.error = message
        } else if case .string(let running)? = value["operationID"], running != operationID {
            status.error = "etcd names operation \(running) as the group's running one"
        }
        for state in GroupWire.memberStates(value["joined"]) ?? [] {
            status.joined.append(
                Member(
                    member: state.member, host: state.host, operationID: state.operationID, state: state.state,
                    consistency: state.consistency))
        }
        if case .object(let failures)? = value["aborted"] {
            for (id, reason) in failures { if case .string(let text) = reason { status.failed[id] = text } }
        }
        return status
    }

    /// Runs `pluginhost __group … --query GROUP` for at most 10 s and returns what it printed.
    static func ask(_ arguments: [String]) -> JSONValue? {
        guard
            let child = try? ChildProcess(
                spawning: Command(
                    executable: currentExecutable(), arguments: arguments,
                    environment: ["PATH": ScriptRunner.searchPath, "LANG": "C"]))
        else { return nil }
        if case .deadlineReached = child.wait(until: Monotonic.Instant.now + .seconds(10)) {
            child.terminateGroup(grace: .zero)
        }
        return try? JSONParser.parse(child.stdoutTail.text)
    }

    var text: String {
        var out = "Group \(group): operation \(operationID), member \(member) of \(members)"
        out += error.map { " (etcd: \($0))\n" } ?? "\n"
        out += TextTable(
            rows: joined.map { member in
                [
                    "  " + member.member, member.host, member.state, member.consistency,
                    failed[member.member].map { "failed: \($0)" } ?? "",
                ]
            }
        ).render()
        let missing = members - joined.count
        if error == nil && missing > 0 { out += "  (\(missing) member\(missing == 1 ? "" : "s") not joined yet)\n" }
        return out
    }
}
