import ArgumentParser
import Glibc
import PluginHost
import PluginHostGroup
import PluginHostSupport
import PluginHostWire

/// `--group NAME --member ID --members N --etcd URL[,URL…]` and the TLS files: a consistency
/// group (README, "Consistency groups"), for `run`, `freeze` and `check`. Each may come from
/// the host config's `group` instead; the command line wins.
struct GroupOptions: ParsableArguments {
    @Option(name: .customLong("group"), help: ArgumentHelp("Take part in this consistency group.", valueName: "name"))
    var name: String?

    @Option(name: .customLong("member"), help: ArgumentHelp("This machine's id in the group.", valueName: "id"))
    var member: String?

    @Option(name: .customLong("members"), help: ArgumentHelp("How many members the group has.", valueName: "n"))
    var members: Int?

    @Option(
        name: .customLong("etcd"), help: ArgumentHelp("etcd client URLs, comma-separated.", valueName: "url[,url…]"))
    var etcd: String?

    @Option(
        name: .customLong("etcd-cacert"),
        help: ArgumentHelp("CA certificate of etcd's server certificates (https).", valueName: "path"))
    var caFile: String?

    @Option(name: .customLong("etcd-cert"), help: ArgumentHelp("Client certificate for etcd.", valueName: "path"))
    var certFile: String?

    @Option(
        name: .customLong("etcd-key"),
        help: ArgumentHelp("The client certificate's key (root's, mode 0600 or 0400).", valueName: "path"))
    var keyFile: String?

    @Option(
        name: .customLong("group-ttl"),
        help: ArgumentHelp("Each member's etcd lease, 2 to 60 s (default 5).", valueName: "seconds"))
    var ttl: Int?

    @Option(
        name: .customLong("group-timeout"),
        help: ArgumentHelp(
            "Longest wait for the others at a barrier before the freeze, 1 to 600 s (default 30).", valueName: "seconds"
        ))
    var timeout: Double?

    func validate() throws {
        for (value, option) in [(name, "--group"), (member, "--member")] {
            if let value, !GroupWire.isValidName(value) { throw ValidationError("\(option) \(GroupFields.nameRule)") }
        }
        if let members, !(1...GroupWire.maximumMembers).contains(members) {
            throw ValidationError("--members must be from 1 to \(GroupWire.maximumMembers)")
        }
        if let etcd, case .failure(let error) = EtcdEndpoint.parseList(etcd) {
            throw ValidationError("--etcd: \(error)")
        }
        for (path, option) in [(caFile, "--etcd-cacert"), (certFile, "--etcd-cert"), (keyFile, "--etcd-key")] {
            if let path, !path.hasPrefix("/") { throw ValidationError("\(option) must be an absolute path") }
        }
        if let ttl, !GroupFields.ttlRange.contains(ttl) {
            throw ValidationError("--group-ttl must be from 2 to 60 seconds")
        }
        if let timeout, !GroupFields.timeoutRange.contains(timeout) {
            throw ValidationError("--group-timeout must be from 1 to 600 seconds")
        }
    }

    var fields: GroupFields {
        var fields = GroupFields()
        fields.name = name
        fields.member = member
        fields.members = members
        if let etcd, case .success(let endpoints) = EtcdEndpoint.parseList(etcd) { fields.endpoints = endpoints }
        fields.caFile = caFile
        fields.certFile = certFile
        fields.keyFile = keyFile
        fields.ttlSeconds = ttl
        fields.timeoutSeconds = timeout
        return fields
    }

    /// The options again, as arguments for the session process.
    var arguments: [String] {
        var arguments: [String] = []
        for (value, option) in [
            (name, "--group"), (member, "--member"), (members.map(String.init), "--members"), (etcd, "--etcd"),
            (caFile, "--etcd-cacert"), (certFile, "--etcd-cert"), (keyFile, "--etcd-key"),
            (ttl.map(String.init), "--group-ttl"), (timeout.map { String($0) }, "--group-timeout"),
        ] {
            if let value { arguments += [option, value] }
        }
        return arguments
    }
}

/// The group process, started by the host itself (never by hand): see `GroupProcess`. With
/// `--query NAME` it prints what etcd holds of that group's running operation, for `status`.
struct GroupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__group", abstract: "Internal: the consistency group process.",
        shouldDisplay: false)

    @Option(name: .customLong("endpoint")) var endpoints: [String] = []
    @Option var ttl: Int = GroupSettings.defaultTTLSeconds
    @Option var cacert: String?
    @Option var cert: String?
    @Option var key: String?
    @Option var query: String?

    func run() throws {
        var parsed: [EtcdEndpoint] = []
        for text in endpoints {
            switch EtcdEndpoint.parse(text) {
            case .success(let endpoint): parsed.append(endpoint)
            case .failure(let error): throw ValidationError("\(error)")
            }
        }
        guard !parsed.isEmpty else { throw ValidationError("--endpoint is required") }
        let settings = GroupProcess.Settings(
            endpoints: parsed, caFile: cacert, certFile: cert, keyFile: key, ttlSeconds: ttl)
        if let query {
            FileHandleOutput.standardOutput.write(
                GroupProcess.query(settings: settings, group: query).serialized() + "\n")
            return
        }
        throw ExitCode(GroupProcess.run(settings: settings))
    }
}
