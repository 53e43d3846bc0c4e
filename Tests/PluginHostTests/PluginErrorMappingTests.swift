import PluginHostWire
import Testing

@testable import PluginHost

/// Which documented code a plugin call's status becomes, and how the report names it.
@Suite("Plugin error mapping")
struct PluginErrorMappingTests {
    static let table: [(PluginCallName, PluginStatus?, ErrorCode)] = [
        (.quiesce, .failed, .pluginQuiesceFailed),
        (.quiesce, .busy, .pluginQuiesceFailed),
        (.quiesce, .timeout, .pluginQuiesceTimeout),
        (.quiesce, .unreachable, .pluginApplicationUnreachable),
        (.quiesce, .consistencyLost, .pluginQuiesceFailed),
        (.quiesce, nil, .pluginQuiesceFailed),
        (.resume, .failed, .pluginResumeFailed),
        (.resume, .timeout, .pluginResumeTimeout),
        (.resume, .consistencyLost, .pluginConsistencyLost),
        (.resume, .unreachable, .pluginApplicationUnreachable),
        (.resume, nil, .pluginResumeFailed),
        (.create, .invalidConfig, .pluginCheckFailed),
        (.create, .unreachable, .pluginApplicationUnreachable),
        (.check, .notAuthorized, .pluginCheckFailed),
        (.check, .unsupported, .pluginCheckFailed),
        (.dataPaths, .failed, .pluginCheckFailed),
    ]

    @Test func statusesMapToTheDocumentedCodes() {
        for (function, status, expected) in Self.table {
            #expect(
                PluginSet.code(for: function, status: status) == expected, "\(function) \(String(describing: status))")
        }
    }

    @Test func outcomesNameEveryStatus() {
        for status in PluginStatus.allCases {
            #expect(PluginCallOutcome(status: status.rawValue).rawValue == status.name)
        }
        #expect(PluginCallOutcome(status: 42) == .unknownStatus)
        #expect(PluginCallOutcome(status: -1) == .unknownStatus)
        #expect(statusName(42) == "status 42")
    }
}
