import FoundationEssentials
import PluginABI
import PluginHostWire
import PluginKit
import Testing

/// `ph_status` in pluginhost_plugin.h is the one list of plugin statuses; the host's
/// (`PluginHostWire.PluginStatus`) and the plugin kit's (`PluginKit.PluginStatus`) must match it.
@Suite("Plugin status list")
struct PluginStatusTests {
    /// `PH_NAME = N` lines of the header's `ph_status` enum, as (name, value).
    static let header: [(name: String, value: Int32)] = {
        let path =
            "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
            + "/Sources/PluginABI/include/pluginhost_plugin.h"
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8),
            let start = text.firstRange(of: "typedef enum ph_status {"),
            let end = text[start.upperBound...].firstRange(of: "} ph_status;")
        else { return [] }
        return text[start.upperBound..<end.lowerBound].split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "," })
            guard words.count >= 3, words[0].hasPrefix("PH_"), words[1] == "=", let value = Int32(words[2]) else {
                return nil
            }
            return (String(words[0].dropFirst(3)), value)
        }
    }()

    @Test func theHeaderIsRead() {
        #expect(Self.header.count >= 9)
        #expect(Self.header.first?.name == "OK" && Self.header.first?.value == Int32(PH_OK.rawValue))
        #expect(Self.header.last?.value == Int32(PH_UNSUPPORTED.rawValue))
    }

    @Test func theHostsListIsTheHeaders() {
        #expect(PluginHostWire.PluginStatus.allCases.map(\.rawValue) == Self.header.map(\.value))
        #expect(
            PluginHostWire.PluginStatus.allCases.map(\.name)
                == Self.header.map { String($0.name.lowercased().map { $0 == "_" ? "-" : $0 }) })
    }

    @Test func thePluginKitsListIsTheHeaders() {
        #expect(PluginKit.PluginStatus.allCases.map(\.rawValue) == Self.header.map(\.value))
        for status in PluginKit.PluginStatus.allCases {
            #expect(PluginHostWire.PluginStatus(rawValue: status.rawValue).map { "\($0)" } == "\(status)")
        }
    }
}
