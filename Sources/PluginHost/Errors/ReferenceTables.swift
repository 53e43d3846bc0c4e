import PluginHostSupport

/// The README's reference tables, generated from the types so that they cannot drift apart
/// (a test checks that README.md contains them verbatim; `pluginhost __docs` prints them).
public enum ReferenceTables {
    public static var errorCodes: String {
        var rows = ["| Code | Origin | Meaning | What to do |", "|---|---|---|---|"]
        for code in ErrorCode.allCases {
            rows.append(
                "| `\(code.rawValue)` | \(code.isAzureDocumented ? "Azure" : "pluginhost") | \(code.meaning) | \(escape(code.action)) |"
            )
        }
        return rows.joined(separator: "\n") + "\n"
    }

    public static var exitStatuses: String {
        var rows = ["| Status | Meaning |", "|---|---|"]
        for status in ExitStatus.allCases {
            rows.append("| \(status.rawValue) | \(status.meaning) |")
        }
        return rows.joined(separator: "\n") + "\n"
    }

    private static func escape(_ text: String) -> String {
        text.replacingPipes()
    }
}

extension String {
    fileprivate func replacingPipes() -> String {
        split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
    }
}
