import PluginHostSupport
import PluginHostWire
import Testing

@testable import PluginHost

/// The host config's `group` object and the merged group settings (README, "Consistency groups").
@Suite("Consistency group settings")
struct GroupSettingsTests {
    static func parse(_ text: String) -> Result<GroupFields, GroupFields.Problem> {
        GroupFields.parse(try! JSONParser.parse(text))
    }

    @Test func aCompleteGroupObject() throws {
        let fields = try Self.parse(
            """
            {"name": "orders", "member": "db-1", "members": 3, "etcd": ["https://10.0.0.5:2379", "https://[fd00::5]:2379"],
             "cacert": "/etc/pluginhost/ca.crt", "cert": "/etc/pluginhost/db1.crt", "key": "/etc/pluginhost/db1.key",
             "ttlSeconds": 10, "timeoutSeconds": 45.5}
            """
        ).get()
        #expect(fields.name == "orders" && fields.member == "db-1" && fields.members == 3)
        #expect(
            fields.endpoints == [
                EtcdEndpoint(secure: true, host: "10.0.0.5", port: 2379),
                EtcdEndpoint(secure: true, host: "fd00::5", port: 2379),
            ])
        #expect(
            fields.caFile == "/etc/pluginhost/ca.crt" && fields.certFile == "/etc/pluginhost/db1.crt"
                && fields.keyFile == "/etc/pluginhost/db1.key")
        #expect(fields.ttlSeconds == 10 && fields.timeoutSeconds == 45.5)
    }

    @Test(arguments: [
        (#"[]"#, "must be an object"),
        (#"{"name": "a/b"}"#, "group.name"),
        (#"{"member": ""}"#, "group.member"),
        (#"{"members": 0}"#, "group.members"),
        (#"{"members": 3.5}"#, "group.members"),
        (#"{"members": "3"}"#, "unexpected key"),
        (#"{"members": 257}"#, "group.members"),
        (#"{"etcd": "http://a:1"}"#, "unexpected key"),
        (#"{"etcd": []}"#, "at least one"),
        (#"{"etcd": ["a:2379"]}"#, "http:// or https://"),
        (#"{"etcd": ["http://a"]}"#, "port"),
        (#"{"etcd": ["http://a:99999"]}"#, "port"),
        (#"{"etcd": ["http://a:2379/v3"]}"#, "no path"),
        (#"{"etcd": [1]}"#, "array of URLs"),
        (#"{"key": "relative.key"}"#, "absolute path"),
        (#"{"ttlSeconds": 1}"#, "ttlSeconds"),
        (#"{"ttlSeconds": 61}"#, "ttlSeconds"),
        (#"{"timeoutSeconds": 0.5}"#, "timeoutSeconds"),
        (#"{"password": "secret"}"#, "unexpected key"),
    ])
    func badGroupObjectsAreRefused(_ text: String, _ expected: String) {
        guard case .failure(let problem) = Self.parse(text) else {
            Issue.record("accepted: \(text)")
            return
        }
        #expect(problem.description.contains(expected), "\(problem)")
    }

    static func fields(_ change: (inout GroupFields) -> Void) -> GroupFields {
        var fields = GroupFields()
        fields.name = "g"
        fields.member = "m1"
        fields.members = 3
        fields.endpoints = [EtcdEndpoint(secure: false, host: "127.0.0.1", port: 2379)]
        change(&fields)
        return fields
    }

    @Test func noGroupNamedMeansNoGroup() {
        let resolved = GroupSettings.resolve(GroupFields())
        #expect(resolved.settings == nil && resolved.problems.isEmpty)
    }

    @Test func defaultsAndTheCommandLineWinning() throws {
        let settings = try #require(GroupSettings.resolve(Self.fields { _ in }).settings)
        #expect(
            settings.ttlSeconds == GroupSettings.defaultTTLSeconds
                && settings.timeoutSeconds == GroupSettings.defaultTimeoutSeconds)
        #expect(settings.processArguments == ["__group", "--ttl", "5", "--endpoint", "http://127.0.0.1:2379"])

        var commandLine = GroupFields()
        commandLine.member = "m2"
        let merged = commandLine.merged(over: Self.fields { $0.ttlSeconds = 9 })
        #expect(merged.member == "m2" && merged.name == "g" && merged.ttlSeconds == 9)
    }

    @Test(arguments: [
        ("member", "no member id"), ("members", "no member count"), ("etcd", "no etcd endpoint"),
        ("https without CA", "needs the CA certificate"),
        ("cert without key", "both the client certificate and its key"),
        ("CA with http", "use https://"), ("member without group", "need --group"),
    ])
    func incompleteSettingsAreProblems(_ what: String, _ expected: String) {
        let fields = Self.fields { fields in
            switch what {
            case "member": fields.member = nil
            case "members": fields.members = nil
            case "etcd": fields.endpoints = nil
            case "https without CA": fields.endpoints = [EtcdEndpoint(secure: true, host: "h", port: 1)]
            case "cert without key": fields.certFile = "/nonexistent/c.crt"
            case "CA with http": fields.caFile = "/nonexistent/ca.crt"
            default: fields.name = nil
            }
        }
        let resolved = GroupSettings.resolve(fields)
        #expect(resolved.settings == nil)
        #expect(
            resolved.problems.contains { $0.code == .incorrectPluginhostFile && $0.message.contains(expected) },
            "\(resolved.problems)")
    }

    @Test func missingCredentialFilesAreNamed() {
        let resolved = GroupSettings.resolve(
            Self.fields {
                $0.endpoints = [EtcdEndpoint(secure: true, host: "h", port: 1)]
                $0.caFile = "/nonexistent/ca.crt"
                $0.certFile = "/nonexistent/m1.crt"
                $0.keyFile = "/nonexistent/m1.key"
            })
        let messages = resolved.problems.map(\.message)
        #expect(messages.contains { $0.contains("etcd CA certificate /nonexistent/ca.crt") })
        #expect(messages.contains { $0.contains("etcd client key /nonexistent/m1.key") })
    }
}
