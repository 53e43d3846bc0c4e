import PluginHostWire
import Testing

@Suite("Worker wire")
struct WorkerWireTests {
    static let requests: [WorkerRequest] =
        [
            .load(kind: .plugin, ffiSpec: nil),
            .load(kind: .ffi, ffiSpec: #"{"quiesce":{"symbol":"s"},"resume":{"symbol":"r"}}"#),
            .create(
                config: #"{"socket":"/run/mysqld/mysqld.sock","ü":"\u0000"}"#, operationID: "20261201T000000Z-abcdef",
                freezeMounts: ["/", "/data", "/mnt/with space"], deadline: .max),
            .create(config: "{}", operationID: "", freezeMounts: [], deadline: 0),
        ] + PluginFunction.allCases.map { .call(function: $0, deadline: 123_456_789, holdUntil: 987_654_321) } + [
            .destroy
        ]

    @Test(arguments: requests) func requestRoundTrip(_ request: WorkerRequest) {
        #expect(WorkerWire.decodeRequest(WorkerWire.encode(request)) == request)
    }

    static let messages: [WorkerMessage] =
        [
            .log(level: 2, message: "connected to MariaDB 10.11 \"quoted\" \\ backslash"),
            .log(level: -1, message: ""),
            .loaded(PluginIdentity(name: "mysql", version: "1.0.0", description: "MySQL/MariaDB quiesce", abi: "1.0")),
        ] + PluginCheck.allCases.map { .refused(check: $0, message: "refused by \($0.rawValue)") } + [
            .result(status: 0, message: "", details: ""),
            .result(status: 7, message: "lock wait timeout", details: "mode=backup-stage\nwaited=3.0\n"),
        ]

    @Test(arguments: messages) func messageRoundTrip(_ message: WorkerMessage) {
        #expect(WorkerWire.decodeMessage(WorkerWire.encode(message)) == message)
    }

    @Test(arguments: [
        "", "null", "[]", "{}", #"{"op":"fly"}"#, #"{"op":"load"}"#, #"{"op":"load","kind":"python"}"#,
        #"{"op":"create","config":"{}","operationID":"x","freezeMounts":[1],"deadline":1}"#,
        #"{"op":"create","config":"{}","operationID":"x","freezeMounts":[],"deadline":-1}"#,
        #"{"op":"create","config":"{}","operationID":"x","freezeMounts":[],"deadline":1.5}"#,
        #"{"op":"quiesce","deadline":1}"#, #"{"op":"quiesce","deadline":"1","holdUntil":0}"#,
        #"{"op":"destroy""#, #"{"msg":"log"}"#,
    ])
    func malformedRequestsAreRefused(_ text: String) {
        #expect(WorkerWire.decodeRequest(Array(text.utf8)) == nil)
    }

    @Test(arguments: [
        "", "{}", #"{"msg":"shout"}"#, #"{"msg":"log","level":1}"#, #"{"msg":"log","level":99999999999,"text":""}"#,
        #"{"msg":"loaded","name":"x","version":"1"}"#, #"{"msg":"refused","check":"mood","text":"x"}"#,
        #"{"msg":"result","status":0,"text":""}"#, #"{"msg":"result","status":"0","text":"","details":""}"#,
        #"{"op":"destroy"}"#,
    ])
    func malformedMessagesAreRefused(_ text: String) {
        #expect(WorkerWire.decodeMessage(Array(text.utf8)) == nil)
    }

    @Test func pluginNames() {
        for name in ["mysql", "pg-15", "a.b_c", String(repeating: "x", count: 64)] {
            #expect(PluginIdentity.isValidName(name))
        }
        for name in ["", "a b", "é", "../x", String(repeating: "x", count: 65)] {
            #expect(!PluginIdentity.isValidName(name))
        }
    }
}
