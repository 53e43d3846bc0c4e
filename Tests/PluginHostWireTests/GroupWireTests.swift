import PluginHostWire
import Testing

@Suite("Group wire")
struct GroupWireTests {
    static let state = GroupMemberState(
        member: "db-1", operationID: "20261201T101010Z-0a1b2c", host: "vm1.example",
        consistency: "application", state: "quiesced")
    static let other = GroupMemberState(
        member: "web_2", operationID: "20261201T101011Z-ffffff", host: "ünï \"host\"",
        consistency: "filesystem", state: "frozen")

    static let requests: [GroupRequest] =
        [
            .join(
                GroupJoin(
                    group: "orders", member: "db-1", members: 3, proposedOperationID: "20261201T101010Z-0a1b2c",
                    state: state)),
            .join(GroupJoin(group: "g", member: "m", members: 1, proposedOperationID: "x", state: other)),
            .abort(reason: "PluginQuiesceFailed: lock wait timeout\nsecond line"),
            .abort(reason: ""),
            .leave(state: other),
        ] + GroupStage.allCases.map { .arrive(stage: $0, state: state) }

    @Test(arguments: requests) func requestRoundTrip(_ request: GroupRequest) {
        #expect(GroupWire.decodeRequest(GroupWire.encode(request)) == request)
    }

    static let events: [GroupEvent] =
        [
            .joined(operationID: "20261201T101010Z-0a1b2c", members: [state]),
            .joined(operationID: "x", members: []),
            .broken(.memberLost, member: "web_2", message: "the lease of web_2 expired"),
            .broken(.unreachable, member: nil, message: "no etcd endpoint answered"),
            .left(groupEnded: true, members: [state, other]),
            .left(groupEnded: false, members: []),
        ] + GroupRefusal.allCases.map { .refused($0, message: "refused: \($0.rawValue)") }
        + GroupStage.allCases.map { .passed(stage: $0, members: [state, other]) }
        + GroupBreak.allCases.map { .broken($0, member: "m", message: "") }

    @Test(arguments: events) func eventRoundTrip(_ event: GroupEvent) {
        #expect(GroupWire.decodeEvent(GroupWire.encode(event)) == event)
    }

    static let goodState = #"{"member":"m","operationID":"o","host":"h","consistency":"none","state":"joined"}"#

    @Test(arguments: [
        "", "null", "{}", #"{"op":"fly"}"#, #"{"op":"join"}"#,
        #"{"op":"join","group":"g","member":"m","members":3,"proposedOperationID":"o"}"#,
        #"{"op":"join","group":"g/x","member":"m","members":3,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"..","members":3,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"m","members":0,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"m","members":1.5,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"m","members":"3","proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"m","members":99999,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"","member":"m","members":3,"proposedOperationID":"o","state":\#(goodState)}"#,
        #"{"op":"join","group":"g","member":"m","members":3,"proposedOperationID":"o","state":\#(goodState),"x":1}"#,
        #"{"op":"arrive","stage":"thawed","state":\#(goodState)}"#,
        #"{"op":"arrive","stage":"frozen"}"#,
        #"{"op":"arrive","stage":"frozen","state":{"member":"m"}}"#,
        #"{"op":"arrive","stage":"frozen","state":{"member":"m","operationID":"o","host":"h","consistency":"none","state":1}}"#,
        #"{"op":"abort"}"#, #"{"op":"abort","reason":null}"#, #"{"op":"leave"}"#,
        #"{"msg":"left","groupEnded":true,"members":[]}"#,
    ])
    func malformedRequestsAreRefused(_ text: String) {
        #expect(GroupWire.decodeRequest(Array(text.utf8)) == nil)
    }

    @Test(arguments: [
        "", "[]", #"{"msg":"shout"}"#, #"{"msg":"joined","operationID":"a b","members":[]}"#,
        #"{"msg":"joined","operationID":"o"}"#, #"{"msg":"joined","operationID":"o","members":[{}]}"#,
        #"{"msg":"refused","reason":"tired","text":""}"#, #"{"msg":"refused","reason":"busy"}"#,
        #"{"msg":"passed","stage":"frozen","members":{}}"#, #"{"msg":"passed","stage":"done","members":[]}"#,
        #"{"msg":"broken","reason":"member-lost","text":"x"}"#,
        #"{"msg":"broken","reason":"member-lost","member":"a/b","text":"x"}"#,
        #"{"msg":"broken","reason":"lost","member":null,"text":"x"}"#,
        #"{"msg":"left","groupEnded":"yes","members":[]}"#, #"{"op":"leave","state":\#(goodState)}"#,
    ])
    func malformedEventsAreRefused(_ text: String) {
        #expect(GroupWire.decodeEvent(Array(text.utf8)) == nil)
    }

    @Test func names() {
        for name in ["orders", "db-1", "a.b_c", String(repeating: "x", count: 64), "20261201T101010Z-0a1b2c"] {
            #expect(GroupWire.isValidName(name))
        }
        for name in ["", ".", "..", "a/b", "a b", "é", "*", String(repeating: "x", count: 65)] {
            #expect(!GroupWire.isValidName(name))
        }
    }

    @Test func stagesAreOrdered() {
        #expect(GroupStage.quiesced < .frozen && GroupStage.frozen < .snapshotted)
    }

    @Test(arguments: [
        ("http://127.0.0.1:2379", EtcdEndpoint(secure: false, host: "127.0.0.1", port: 2379)),
        ("https://etcd-1.example:2379/", EtcdEndpoint(secure: true, host: "etcd-1.example", port: 2379)),
        ("https://[fd00::1]:23790", EtcdEndpoint(secure: true, host: "fd00::1", port: 23790)),
    ])
    func endpoints(_ text: String, _ expected: EtcdEndpoint) throws {
        #expect(try EtcdEndpoint.parse(text).get() == expected)
        #expect(try EtcdEndpoint.parse(expected.description).get() == expected)
    }

    @Test(arguments: [
        "", "127.0.0.1:2379", "unix:///run/etcd.sock", "http://", "http://h", "http://h:0", "http://h:65536",
        "http://h:2379/v3", "http://user@h:2379", "http://h:2379?x=1", "http://[fd00::1]", "http://h_x:1", "ftp://h:1",
    ])
    func badEndpointsAreRefused(_ text: String) {
        #expect((try? EtcdEndpoint.parse(text).get()) == nil)
    }

    @Test func endpointLists() {
        #expect((try? EtcdEndpoint.parseList("http://a:1,http://b:2").get())?.map(\.host) == ["a", "b"])
        #expect((try? EtcdEndpoint.parseList("http://a:1,").get()) == nil)
    }

    @Test(arguments: ["", "f", "fo", "foo", "foob", "fooba", "foobar", "/pluginhost/groups/g/ü"])
    func base64RoundTrip(_ text: String) {
        #expect(Base64.decode(Base64.encode(text)) == Array(text.utf8))
    }

    @Test func base64KnownValues() {
        #expect(Base64.encode("foobar") == "Zm9vYmFy" && Base64.encode("fo") == "Zm8=" && Base64.encode("f") == "Zg==")
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "=Zg=", "Zm=v"] { #expect(Base64.decode(bad) == nil, "\(bad)") }
    }
}
