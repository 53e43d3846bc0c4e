import PluginHostWire
import Testing

@Suite("Session wire")
struct SessionWireTests {
    static let requests: [SessionRequest] = [
        .status,
        .thaw(operationID: nil, snapshotTaken: true),
        .thaw(operationID: nil, snapshotTaken: false),
        .thaw(operationID: "20261201T101010Z-0a1b2c", snapshotTaken: true),
        .thaw(operationID: "20261201T101010Z-0a1b2c", snapshotTaken: false),
    ]

    @Test(arguments: requests) func requestRoundTrip(_ request: SessionRequest) {
        #expect(request.line.hasSuffix("\n"))
        #expect(SessionRequest.decode(line: request.line.dropLast()) == request)
    }

    @Test func aBareThawMeansTheActiveOperation() {
        #expect(SessionRequest.decode(line: "THAW") == .thaw(operationID: nil, snapshotTaken: true))
    }

    @Test(arguments: [
        "", "status", "STATUS now", "THAW a b", "THAW ", "THAW  x", "THAW x\ty", "THAW \u{7F}",
        "THAW " + String(repeating: "x", count: 129), "FREEZE", "THAW-FAILED a b",
    ])
    func malformedRequestsAreRefused(_ line: String) {
        #expect(SessionRequest.decode(line: line) == nil)
    }

    @Test(arguments: ["unknown request", "operation \"x\" is not the active one", "ünïcode\nnewline"])
    func refusalRoundTrip(_ message: String) {
        let refusal = SessionRefusal(message)
        #expect(refusal.encoded.filter { $0 == "\n" }.count == 1)
        #expect(SessionRefusal.decode(refusal.encoded) == refusal)
    }

    @Test(arguments: ["", "{}", #"{"error":1}"#, #"{"error":"x","extra":1}"#, #"["error"]"#, "error"])
    func malformedRefusalsAreRefused(_ text: String) {
        #expect(SessionRefusal.decode(text) == nil)
    }
}
