import PluginHostSupport
import Testing

@testable import PluginHost

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
        let error = HostError(.freezeFailed, "/data: EBUSY", step: "freeze")
        #expect(error.description == "FreezeFailed: /data: EBUSY")
    }

    /// Azure's troubleshooting table, "Error message" column, for each of its ten codes.
    static let azureSentences: [(ErrorCode, String)] = [
        (.preScriptExecutionFailed, "The prescript returned an error, so backup might not be application-consistent."),
        (.postScriptExecutionFailed, "The post-script returned an error that might impact application state."),
        (
            .preScriptNotFound,
            "The prescript wasn't found at the location that's specified in the VMSnapshotScriptPluginConfig.json config file."
        ),
        (
            .postScriptNotFound,
            "The post-script wasn't found at the location that's specified in the VMSnapshotScriptPluginConfig.json config file."
        ),
        (
            .incorrectPluginhostFile,
            "The Pluginhost file, which comes with the VmSnapshotLinux extension, is corrupted, so prescript and post-script can't run and the backup won't be application-consistent."
        ),
        (
            .incorrectJSONConfigFile,
            "The VMSnapshotScriptPluginConfig.json file is incorrect, so prescript and post-script can't run and the backup won't be application-consistent."
        ),
        (
            .insufficientPermissionForPreScript,
            #"For running scripts, "root" user should be the owner of the file and the file should have "700" permissions (that is, only "owner" should have "read", "write", and "execute" permissions)."#
        ),
        (
            .insufficientPermissionForPostScript,
            #"For running scripts, "root" user should be the owner of the file and the file should have "700" permissions (that is, only "owner" should have "read", "write", and "execute" permissions)."#
        ),
        (.preScriptTimeout, "The execution of the application-consistent backup pre-script timed-out."),
        (.postScriptTimeout, "The execution of the application-consistent backup post-scripts timed out."),
    ]

    @Test(arguments: azureSentences)
    func anAzureCodesMessageBeginsWithAzuresSentenceOnce(code: ErrorCode, sentence: String) {
        #expect(code.azureMessage == sentence)
        let error = HostError(code, "/etc/azure/pre.sh: exit status 1", step: "pre-script")
        #expect(error.message == sentence + " /etc/azure/pre.sh: exit status 1")
        #expect(error.description == "\(code.rawValue): \(sentence) /etc/azure/pre.sh: exit status 1")
        // Wrapping an error's message in another keeps the sentence once, at the front.
        let wrapped = HostError(code, "/etc/azure/config.json: \(error.message)")
        #expect(wrapped.message == sentence + " /etc/azure/config.json: /etc/azure/pre.sh: exit status 1")
        #expect(HostError(code, "").message == sentence)
    }

    @Test func ourExtensionsHaveNoAzureSentence() {
        for code in ErrorCode.allCases where !code.isAzureDocumented {
            #expect(code.azureMessage == nil, "\(code)")
            #expect(HostError(code, "as written").message == "as written")
        }
        #expect(Set(Self.azureSentences.map(\.0)).count == 10)
    }
}
