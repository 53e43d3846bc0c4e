import Testing
@testable import PluginHost
import PluginHostSupport

@Suite("ErrorCode")
struct ErrorCodeTests {
    static let azureCodes: [String] = [
        "Pre-ScriptExecutionFailed", "Post-ScriptExecutionFailed",
        "Pre-ScriptNotFound", "Post-ScriptNotFound",
        "IncorrectPluginhostFile", "IncorrectJSONConfigFile",
        "InsufficientPermissionforPre-Script", "InsufficientPermissionforPost-Script",
        "Pre-ScriptTimeout", "Post-ScriptTimeout",
    ]

    @Test func azureCodesHaveExactRawValues() {
        let expected: [(ErrorCode, String)] = [
            (.preScriptExecutionFailed, "Pre-ScriptExecutionFailed"),
            (.postScriptExecutionFailed, "Post-ScriptExecutionFailed"),
            (.preScriptNotFound, "Pre-ScriptNotFound"),
            (.postScriptNotFound, "Post-ScriptNotFound"),
            (.incorrectPluginhostFile, "IncorrectPluginhostFile"),
            (.incorrectJSONConfigFile, "IncorrectJSONConfigFile"),
            (.insufficientPermissionForPreScript, "InsufficientPermissionforPre-Script"),
            (.insufficientPermissionForPostScript, "InsufficientPermissionforPost-Script"),
            (.preScriptTimeout, "Pre-ScriptTimeout"),
            (.postScriptTimeout, "Post-ScriptTimeout"),
        ]
        for (code, raw) in expected {
            #expect(code.rawValue == raw)
            #expect(ErrorCode(rawValue: raw) == code)
        }
    }

    @Test func everyAzureCodeExists() {
        for raw in Self.azureCodes {
            #expect(ErrorCode(rawValue: raw) != nil, "missing Azure code \(raw)")
        }
    }

    @Test func isAzureDocumentedExactlyForTheTen() {
        let documented = ErrorCode.allCases.filter(\.isAzureDocumented).map(\.rawValue)
        #expect(Set(documented) == Set(Self.azureCodes))
        #expect(documented.count == 10)
        for code in ErrorCode.allCases {
            #expect(code.isAzureDocumented == Self.azureCodes.contains(code.rawValue), "\(code)")
        }
    }

    @Test(arguments: ErrorCode.allCases)
    func everyCodeHasMeaningAndAction(_ code: ErrorCode) {
        let meaningIsBlank = code.meaning.allSatisfy { $0.isWhitespace }
        let actionIsBlank = code.action.allSatisfy { $0.isWhitespace }
        #expect(!meaningIsBlank, "\(code) has no meaning")
        #expect(!actionIsBlank, "\(code) has no action")
        #expect(code.meaning != code.action)
    }

    @Test func rawValuesAreUnique() {
        let raws = ErrorCode.allCases.map(\.rawValue)
        #expect(Set(raws).count == raws.count)
        #expect(Set(raws.map { $0.lowercased() }).count == raws.count, "raw values differ only by case")
        #expect(raws.allSatisfy { !$0.isEmpty && !$0.contains(" ") })
    }

    @Test func hostErrorDescriptionStartsWithTheCode() {
        let error = HostError(.incorrectJSONConfigFile, "timeoutInSeconds: expected an integer", step: "checks")
        #expect(error.description == "IncorrectJSONConfigFile: timeoutInSeconds: expected an integer")
    }
}
