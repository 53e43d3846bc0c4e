import Glibc
public import PluginHostSupport
public import PluginHostWire

/// A consistency group's settings as given: on the command line (`--group`, `--member`,
/// `--members`, `--etcd`, …) or in the host config's `group` object. Every field may be
/// missing; the command line wins field by field (README, "Consistency groups").
public struct GroupFields: Sendable, Equatable {
    public var name: String?
    public var member: String?
    public var members: Int?
    public var endpoints: [EtcdEndpoint]?
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var ttlSeconds: Int?
    public var timeoutSeconds: Double?

    public init() {}

    public var isEmpty: Bool { self == GroupFields() }

    /// `self` with every missing field taken from `fallback`.
    public func merged(over fallback: GroupFields) -> GroupFields {
        var result = self
        result.name = name ?? fallback.name
        result.member = member ?? fallback.member
        result.members = members ?? fallback.members
        result.endpoints = endpoints ?? fallback.endpoints
        result.caFile = caFile ?? fallback.caFile
        result.certFile = certFile ?? fallback.certFile
        result.keyFile = keyFile ?? fallback.keyFile
        result.ttlSeconds = ttlSeconds ?? fallback.ttlSeconds
        result.timeoutSeconds = timeoutSeconds ?? fallback.timeoutSeconds
        return result
    }

    public static let ttlRange = 2...60
    public static let timeoutRange = 1.0...600.0

    /// The host config's `group` object: keys `name`, `member`, `members`, `etcd` (an array of
    /// URLs), `cacert`, `cert`, `key`, `ttlSeconds`, `timeoutSeconds`.
    public static func parse(_ value: JSONValue) -> Result<GroupFields, Problem> {
        guard case .object(let members) = value else {
            return .failure("group must be an object, found \(value.kindDescription)")
        }
        var fields = GroupFields()
        for (key, item) in members {
            switch (key, item) {
            case ("name", .string(let text)):
                guard GroupWire.isValidName(text) else { return .failure("group.name \(nameRule)") }
                fields.name = text
            case ("member", .string(let text)):
                guard GroupWire.isValidName(text) else { return .failure("group.member \(nameRule)") }
                fields.member = text
            case ("members", .number(let number)):
                guard let count = number.integerValue, (1...GroupWire.maximumMembers).contains(count) else {
                    return .failure(
                        "group.members must be an integer from 1 to \(GroupWire.maximumMembers), found \(number.text)")
                }
                fields.members = count
            case ("etcd", .array(let items)):
                var endpoints: [EtcdEndpoint] = []
                for entry in items {
                    guard case .string(let text) = entry else {
                        return .failure("group.etcd must be an array of URLs, found \(entry.kindDescription)")
                    }
                    switch EtcdEndpoint.parse(text) {
                    case .success(let endpoint): endpoints.append(endpoint)
                    case .failure(let error): return .failure("group.etcd: \(error)")
                    }
                }
                guard !endpoints.isEmpty else { return .failure("group.etcd must name at least one URL") }
                fields.endpoints = endpoints
            case ("cacert", .string(let path)), ("cert", .string(let path)), ("key", .string(let path)):
                guard path.hasPrefix("/") else { return .failure("group.\(key) must be an absolute path") }
                if key == "cacert" {
                    fields.caFile = path
                } else if key == "cert" {
                    fields.certFile = path
                } else {
                    fields.keyFile = path
                }
            case ("ttlSeconds", .number(let number)):
                guard let ttl = number.integerValue, ttlRange.contains(ttl) else {
                    return .failure(
                        "group.ttlSeconds must be an integer from \(ttlRange.lowerBound) to \(ttlRange.upperBound), found \(number.text)"
                    )
                }
                fields.ttlSeconds = ttl
            case ("timeoutSeconds", .number(let number)):
                guard let seconds = number.doubleValue, timeoutRange.contains(seconds) else {
                    return .failure("group.timeoutSeconds must be from 1 to 600, found \(number.text)")
                }
                fields.timeoutSeconds = seconds
            default:
                return .failure("unexpected key \"group.\(key)\" or value \(item.kindDescription)")
            }
        }
        return .success(fields)
    }

    /// What is wrong with a host config's `group`.
    public struct Problem: Error, Sendable, Equatable, ExpressibleByStringInterpolation, CustomStringConvertible {
        public var description: String
        public init(stringLiteral value: String) { description = value }
    }

    public static let nameRule = "must be 1 to 64 letters, digits, '.', '_' or '-'"
}

/// A consistency group this operation takes part in, checked (README, "Consistency groups").
public struct GroupSettings: Sendable, Equatable {
    public static let defaultTTLSeconds = 5
    public static let defaultTimeoutSeconds = 30.0

    public var name: String
    public var member: String
    public var members: Int
    public var endpoints: [EtcdEndpoint]
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// The etcd lease of each member: how long after a member dies (or loses its network) the
    /// others know.
    public var ttlSeconds: Int
    /// The longest a member waits at a barrier before the freeze for the others to arrive.
    public var timeoutSeconds: Double

    /// Checks the merged fields: nil settings and no problem when no group is named; else the
    /// settings, or every problem found (`IncorrectPluginhostFile`: the credential files are held
    /// to the rules of the host's other files).
    public static func resolve(_ fields: GroupFields) -> (settings: GroupSettings?, problems: [HostError]) {
        guard let name = fields.name else {
            if fields.member != nil || fields.members != nil {
                return (nil, [problem("--member and --members need --group (or group.name in the host config)")])
            }
            return (nil, [])
        }
        var problems: [HostError] = []
        if fields.member == nil {
            problems.append(problem("group \(name): no member id: give --member (or group.member)"))
        }
        if fields.members == nil {
            problems.append(problem("group \(name): no member count: give --members (or group.members)"))
        }
        let endpoints = fields.endpoints ?? []
        if endpoints.isEmpty {
            problems.append(problem("group \(name): no etcd endpoint: give --etcd URL[,URL…] (or group.etcd)"))
        }
        if let members = fields.members, !(1...GroupWire.maximumMembers).contains(members) {
            problems.append(problem("group \(name): --members must be from 1 to \(GroupWire.maximumMembers)"))
        }
        if endpoints.contains(where: \.secure) && fields.caFile == nil {
            problems.append(
                problem(
                    "group \(name): an https etcd endpoint needs the CA certificate (--etcd-cacert, or group.cacert)"))
        }
        if (fields.certFile == nil) != (fields.keyFile == nil) {
            problems.append(
                problem(
                    "group \(name): give both the client certificate and its key (--etcd-cert and --etcd-key), or neither"
                ))
        }
        if fields.caFile != nil && !endpoints.isEmpty && !endpoints.allSatisfy(\.secure) {
            problems.append(
                problem(
                    "group \(name): TLS files are given but an etcd endpoint is http://; use https:// for every endpoint"
                ))
        }
        for (path, rule, what) in [
            (fields.caFile, FileTrust.Rule.readOnlyForOthers, "etcd CA certificate"),
            (fields.certFile, .readOnlyForOthers, "etcd client certificate"),
            (fields.keyFile, .secret, "etcd client key"),
        ] {
            guard let path else { continue }
            if case .failure(let failure) = FileTrust.verify(path, rule: rule) {
                problems.append(problem("\(what) \(failure)" + (failure.remedy.map { " (\($0))" } ?? "")))
            }
        }
        guard problems.isEmpty, let member = fields.member, let members = fields.members else { return (nil, problems) }
        return (
            GroupSettings(
                name: name, member: member, members: members, endpoints: endpoints, caFile: fields.caFile,
                certFile: fields.certFile, keyFile: fields.keyFile,
                ttlSeconds: fields.ttlSeconds ?? defaultTTLSeconds,
                timeoutSeconds: fields.timeoutSeconds ?? defaultTimeoutSeconds), []
        )
    }

    static func problem(_ message: String) -> HostError {
        HostError(.incorrectPluginhostFile, message, step: "checks")
    }

    /// The arguments of `pluginhost __group` for these settings (paths only: nothing secret).
    public var processArguments: [String] {
        var arguments = ["__group", "--ttl", String(ttlSeconds)]
        for endpoint in endpoints { arguments += ["--endpoint", endpoint.description] }
        if let caFile { arguments += ["--cacert", caFile] }
        if let certFile { arguments += ["--cert", certFile] }
        if let keyFile { arguments += ["--key", keyFile] }
        return arguments
    }
}
