import PluginHostSupport
import Testing

@testable import PluginHost

/// README, "The config file": every row of the Azure config table, table-driven.
@Suite("ScriptConfig")
struct ScriptConfigTests {
    // MARK: - Building documents

    /// A valid config in Azure's key order; values are raw JSON text.
    static let base: [(key: String, json: String)] = [
        ("pluginName", #""ScriptRunner""#),
        ("preScriptLocation", #""/etc/azure/prescript.sh""#),
        ("postScriptLocation", #""/etc/azure/postscript.sh""#),
        ("preScriptParams", #"["", ""]"#),
        ("postScriptParams", #"["", ""]"#),
        ("preScriptNoOfRetries", "0"),
        ("postScriptNoOfRetries", "0"),
        ("timeoutInSeconds", "30"),
        ("continueBackupOnFailure", "true"),
        ("fsFreezeEnabled", "true"),
    ]

    /// The base document with `key` set to raw JSON `json` (appended when not a base key).
    static func document(
        setting key: String? = nil, to json: String = "", removing removed: [String] = [],
        adding extra: [(String, String)] = []
    ) -> String {
        var members = base.filter { !removed.contains($0.key) }
        if let key {
            if let index = members.firstIndex(where: { $0.key == key }) {
                members[index].json = json
            } else {
                members.append((key, json))
            }
        }
        members += extra.map { (key: $0.0, json: $0.1) }
        return "{\n" + members.map { "    \"\($0.key)\" : \($0.json)" }.joined(separator: ",\n") + "\n}\n"
    }

    static func parse(_ text: String) throws(HostError) -> (config: ScriptConfig, warnings: [String]) {
        try ScriptConfig.parse(Array(text.utf8))
    }

    // MARK: - Malformed files

    struct Malformed: Sendable, CustomTestStringConvertible {
        var name: String
        var bytes: [UInt8]
        /// Every one must appear in the error message.
        var fragments: [String]
        var testDescription: String { name }

        init(_ name: String, _ text: String, _ fragments: [String]) {
            self.init(name, bytes: Array(text.utf8), fragments)
        }

        init(_ name: String, bytes: [UInt8], _ fragments: [String]) {
            self.name = name
            self.bytes = bytes
            self.fragments = fragments
        }

        /// `key` set to `json`: the message names the field, the expected form and what was found.
        static func field(
            _ key: String, _ json: String, expected: String, found: String,
            label: String? = nil
        ) -> Malformed {
            Malformed(
                "\(key) = \(label ?? json)", ScriptConfigTests.document(setting: key, to: json),
                ["\(key): ", "expected \(expected)", "found \(found)"])
        }

        /// A syntax error: the message says the file is not JSON, where, and what is wrong.
        static func syntax(_ name: String, _ text: String, _ what: String...) -> Malformed {
            Malformed("syntax: \(name)", text, ["the file is not valid JSON", "line "] + what)
        }

        static func syntax(_ name: String, bytes: [UInt8], _ what: String...) -> Malformed {
            Malformed("syntax: \(name)", bytes: bytes, ["the file is not valid JSON", "line "] + what)
        }
    }

    static let timeoutForm = "an integer of 1 or more (seconds per script attempt)"
    static let retriesForm = "an integer of 0 or more"
    static let pollForm = "an integer from 1 to 5"
    static let booleanForm = "true or false"
    static let paramsForm = "an array of strings"
    static let paramForm = "a string (or a number)"
    static let pathForm = "an absolute path to a script"

    static let malformed: [Malformed] = {
        typealias M = Malformed
        var cases: [Malformed] = []

        // timeoutInSeconds
        cases += [
            M.field("timeoutInSeconds", #""60""#, expected: timeoutForm, found: #"string "60""#),
            M.field("timeoutInSeconds", "60.0", expected: timeoutForm, found: "number 60.0"),
            M.field("timeoutInSeconds", "6e1", expected: timeoutForm, found: "number 6e1"),
            M.field("timeoutInSeconds", "6E+1", expected: timeoutForm, found: "number 6E+1"),
            M.field("timeoutInSeconds", "null", expected: timeoutForm, found: "null"),
            M.field("timeoutInSeconds", "true", expected: timeoutForm, found: "boolean true"),
            M.field("timeoutInSeconds", "[60]", expected: timeoutForm, found: "an array"),
            M.field("timeoutInSeconds", #"{"value": 60}"#, expected: timeoutForm, found: "an object"),
            M.field("timeoutInSeconds", "0", expected: timeoutForm, found: "0, which is out of range"),
            M.field("timeoutInSeconds", "-0", expected: timeoutForm, found: "-0, which is out of range"),
            M.field("timeoutInSeconds", "-30", expected: timeoutForm, found: "-30, which is out of range"),
            M.field(
                "timeoutInSeconds", "99999999999999999999", expected: timeoutForm,
                found: "99999999999999999999, which is out of range"),
            M.field(
                "timeoutInSeconds", "-9223372036854775809", expected: timeoutForm,
                found: "-9223372036854775809, which is out of range"),
        ]
        // Retries
        for key in ["preScriptNoOfRetries", "postScriptNoOfRetries"] {
            cases += [
                M.field(key, #""2""#, expected: retriesForm, found: #"string "2""#),
                M.field(key, "2.0", expected: retriesForm, found: "number 2.0"),
                M.field(key, "1e0", expected: retriesForm, found: "number 1e0"),
                M.field(key, "null", expected: retriesForm, found: "null"),
                M.field(key, "false", expected: retriesForm, found: "boolean false"),
                M.field(key, "-1", expected: retriesForm, found: "-1, which is out of range"),
                M.field(
                    key, "9223372036854775808", expected: retriesForm,
                    found: "9223372036854775808, which is out of range"),
            ]
        }
        // Booleans
        for key in ["continueBackupOnFailure", "fsFreezeEnabled"] {
            cases += [
                M.field(key, #""false""#, expected: booleanForm, found: #"string "false""#),
                M.field(key, #""true""#, expected: booleanForm, found: #"string "true""#),
                M.field(key, "null", expected: booleanForm, found: "null"),
                M.field(key, "0", expected: booleanForm, found: "integer 0"),
                M.field(key, "1", expected: booleanForm, found: "integer 1"),
                M.field(key, "[true]", expected: booleanForm, found: "an array"),
            ]
        }
        // ScriptsExecutionPollTimeSeconds
        let poll = "ScriptsExecutionPollTimeSeconds"
        cases += [
            M.field(poll, "0", expected: pollForm, found: "0, which is out of range"),
            M.field(poll, "6", expected: pollForm, found: "6, which is out of range"),
            M.field(poll, "-1", expected: pollForm, found: "-1, which is out of range"),
            M.field(poll, #""3""#, expected: pollForm, found: #"string "3""#),
            M.field(poll, "3.0", expected: pollForm, found: "number 3.0"),
            M.field(poll, "null", expected: pollForm, found: "null"),
        ]
        // Params
        for key in ["preScriptParams", "postScriptParams"] {
            cases += [
                M.field(key, #""-v --full""#, expected: paramsForm, found: #"string "-v --full""#),
                M.field(key, "null", expected: paramsForm, found: "null"),
                M.field(key, #"{"0": "a"}"#, expected: paramsForm, found: "an object"),
                M.field(key, "5", expected: paramsForm, found: "integer 5"),
                M.field(key, "true", expected: paramsForm, found: "boolean true"),
            ]
            cases += [
                Malformed(
                    "\(key) = [null]", document(setting: key, to: "[null]"),
                    ["\(key)[0]: ", "expected \(paramForm)", "found null"]),
                Malformed(
                    "\(key) = [\"a\", true]", document(setting: key, to: #"["a", true]"#),
                    ["\(key)[1]: ", "expected \(paramForm)", "found boolean true"]),
                Malformed(
                    "\(key) = [\"a\", \"b\", {}]", document(setting: key, to: #"["a", "b", {}]"#),
                    ["\(key)[2]: ", "expected \(paramForm)", "found an object"]),
                Malformed(
                    "\(key) = [[\"a\"]]", document(setting: key, to: #"[["a"]]"#),
                    ["\(key)[0]: ", "expected \(paramForm)", "found an array"]),
                Malformed(
                    "\(key) = [\"a\\u0000b\"]", document(setting: key, to: #"["a\u0000b"]"#),
                    ["\(key)[0]: ", "expected a string without NUL characters", "found string"]),
            ]
        }
        // Locations
        for key in ["preScriptLocation", "postScriptLocation"] {
            cases += [
                Malformed("\(key) missing", document(removing: [key]), ["\(key): required", "expected \(pathForm)"]),
                M.field(key, "5", expected: pathForm, found: "integer 5"),
                M.field(key, "null", expected: pathForm, found: "null"),
                M.field(key, "true", expected: pathForm, found: "boolean true"),
                M.field(key, #"["/etc/azure/script.sh"]"#, expected: pathForm, found: "an array"),
                M.field(
                    key, #""/etc/azure/pre\u0000.sh""#, expected: "\(pathForm) without NUL characters",
                    found: "string"),
            ]
        }
        let longPath = "/" + String(repeating: "a", count: 4095)
        cases.append(
            Malformed(
                "preScriptLocation 4096 bytes long",
                document(setting: "preScriptLocation", to: "\"\(longPath)\""),
                ["preScriptLocation: ", "longer than 4095 bytes"]))
        // Keys are case-sensitive: the wrong case is an unknown key, the real one is still missing.
        cases.append(
            Malformed(
                "PreScriptLocation (wrong case)",
                document(
                    removing: ["preScriptLocation"],
                    adding: [("PreScriptLocation", #""/etc/azure/prescript.sh""#)]),
                [
                    "preScriptLocation: required", "expected \(pathForm)",
                    #"found "PreScriptLocation""#, #"did you mean "preScriptLocation"?"#,
                ]))
        cases.append(
            Malformed(
                "POSTSCRIPTLOCATION (wrong case)",
                document(
                    removing: ["postScriptLocation"],
                    adding: [("POSTSCRIPTLOCATION", #""/etc/azure/postscript.sh""#)]),
                [
                    "postScriptLocation: required", "expected \(pathForm)",
                    #"did you mean "postScriptLocation"?"#,
                ]))
        // pluginName is a label, but still a string.
        cases += [
            M.field("pluginName", "5", expected: "a string", found: "integer 5"),
            M.field("pluginName", "null", expected: "a string", found: "null"),
            M.field("pluginName", #"["ScriptRunner"]"#, expected: "a string", found: "an array"),
        ]

        // The top level.
        let topLevel = "the top level must be a JSON object, found "
        cases += [
            Malformed(
                "top level: array", #"[{"preScriptLocation": "/a", "postScriptLocation": "/b"}]"#,
                [topLevel + "an array"]),
            Malformed("top level: empty array", "[]", [topLevel + "an array"]),
            Malformed(
                "top level: string", #""/etc/azure/prescript.sh""#,
                [topLevel + #"string "/etc/azure/prescript.sh""#]),
            Malformed("top level: number", "42", [topLevel + "integer 42"]),
            Malformed("top level: float", "4.2", [topLevel + "number 4.2"]),
            Malformed("top level: null", "null", [topLevel + "null"]),
            Malformed("top level: boolean", "true", [topLevel + "boolean true"]),
        ]

        // Syntax. Each message says it is not JSON, where, and what is wrong.
        let valid = document()
        cases += [
            M.syntax("empty file", "", "the document is empty"),
            M.syntax("whitespace only", " \n\t\r\n  ", "the document is empty"),
            M.syntax("newline only", "\n", "the document is empty"),
            M.syntax(
                "byte-order mark", bytes: [0xEF, 0xBB, 0xBF] + Array(valid.utf8),
                "byte-order mark", "save it without one"),
            M.syntax(
                "invalid UTF-8 (Latin-1 é)",
                bytes: Array(#"{"pluginName": "Scr"#.utf8) + [0xE9] + Array(#"ipt", "#.utf8)
                    + Array(valid.utf8.dropFirst()),
                "not valid UTF-8"),
            M.syntax(
                "invalid UTF-8 (truncated sequence at the end)", bytes: Array(valid.utf8) + [0xE2, 0x82],
                "not valid UTF-8"),
            M.syntax("UTF-16", bytes: [0xFF, 0xFE] + Array(valid.utf8).flatMap { [$0, 0] }, "not valid UTF-8"),
            M.syntax(
                "duplicate key", document(adding: [("timeoutInSeconds", "60")]),
                "line 12, column 5", #"duplicate key "timeoutInSeconds""#),
            M.syntax(
                "duplicate location", document(adding: [("preScriptLocation", #""/tmp/evil.sh""#)]),
                #"duplicate key "preScriptLocation""#),
            M.syntax(
                "trailing comma in the object", valid.replacingFirst("true\n}", with: "true,\n}"),
                "trailing comma before }"),
            M.syntax(
                "trailing comma in params", document(setting: "preScriptParams", to: #"["a", "b",]"#),
                "trailing comma before ]"),
            M.syntax(
                "line comment", "// Azure backup config\n" + valid, "line 1, column 1", "unexpected character '/'"),
            M.syntax(
                "comment after a member",
                valid.replacingFirst(#""ScriptRunner","#, with: #""ScriptRunner", // label"#),
                "line 2", "expected a quoted key"),
            M.syntax("block comment", valid.replacingFirst("{", with: "{ /* config */"), "expected a quoted key"),
            M.syntax("hash comment", "# config\n" + valid, "unexpected character '#'"),
            M.syntax(
                "single-quoted value", document(setting: "pluginName", to: "'ScriptRunner'"),
                "unexpected character"),
            M.syntax(
                "single-quoted key", valid.replacingFirst(#""pluginName""#, with: "'pluginName'"),
                "expected a quoted key"),
            M.syntax(
                "unquoted key", valid.replacingFirst(#""pluginName""#, with: "pluginName"),
                "expected a quoted key"),
            M.syntax(
                "unterminated string", #"{"preScriptLocation": "/etc/azure/prescript.sh}"#,
                "unterminated string"),
            M.syntax(
                "unterminated string at a newline",
                valid.replacingFirst(#""/etc/azure/prescript.sh""#, with: #""/etc/azure/prescript.sh"#),
                "control character 0xa"),
            M.syntax("missing closing brace", String(valid.dropLast(2)), "expected , or }"),
            M.syntax(
                "missing comma", valid.replacingFirst(#""ScriptRunner","#, with: #""ScriptRunner""#),
                #"expected , or } after the value of "pluginName""#),
            M.syntax(
                "missing colon", valid.replacingFirst(#""pluginName" :"#, with: #""pluginName""#),
                #"expected : after the key "pluginName""#),
            M.syntax(
                "leading zero in timeoutInSeconds", document(setting: "timeoutInSeconds", to: "030"),
                "leading zeros"),
            M.syntax(
                "leading zeros in retries", document(setting: "preScriptNoOfRetries", to: "00"),
                "leading zeros"),
            M.syntax("plus sign", document(setting: "timeoutInSeconds", to: "+30"), "unexpected character '+'"),
            M.syntax(
                "hexadecimal", document(setting: "timeoutInSeconds", to: "0x1E"),
                #"expected , or } after the value of "timeoutInSeconds""#),
            M.syntax("NaN", document(setting: "timeoutInSeconds", to: "NaN"), "unexpected character 'N'"),
            M.syntax("Infinity", document(setting: "timeoutInSeconds", to: "Infinity"), "unexpected character 'I'"),
            M.syntax("Python True", document(setting: "fsFreezeEnabled", to: "True"), "unexpected character 'T'"),
            M.syntax(
                "deep nesting",
                document(adding: [
                    (
                        "extra",
                        String(repeating: "[", count: 200)
                            + String(repeating: "]", count: 200)
                    )
                ]),
                "nested deeper than 64 levels"),
            M.syntax("trailing garbage after the object", valid + "x", "unexpected text after the JSON value"),
            M.syntax("second object after the object", valid + valid, "unexpected text after the JSON value"),
            M.syntax("NUL after the object", bytes: Array(valid.utf8) + [0], "unexpected text after the JSON value"),
            M.syntax(
                "lone high surrogate", document(setting: "preScriptParams", to: #"["\uD83D"]"#),
                "lone high surrogate"),
            M.syntax(
                "high surrogate without a low one", document(setting: "pluginName", to: #""\uD83D\u0041""#),
                "invalid low surrogate"),
            M.syntax("lone low surrogate", document(setting: "pluginName", to: #""\uDE00""#), "lone low surrogate"),
            M.syntax(
                "raw tab in a string", document(setting: "pluginName", to: "\"Script\tRunner\""),
                "control character 0x9", "escape it"),
            M.syntax(
                "raw NUL in a path",
                bytes: Array(
                    document(
                        setting: "preScriptLocation",
                        to: "\"/etc/azure/pre\u{0}.sh\""
                    ).utf8),
                "control character 0x0"),
            M.syntax(
                "raw escape character in a param", document(setting: "postScriptParams", to: "[\"\u{1B}[0m\"]"),
                "control character 0x1b"),
            M.syntax("invalid escape", document(setting: "pluginName", to: #""Script\xRunner""#), "invalid escape"),
        ]
        return cases
    }()

    @Test func thereAreEnoughMalformedCases() {
        #expect(Self.malformed.count >= 40)
        #expect(Set(Self.malformed.map(\.name)).count == Self.malformed.count, "case names must be unique")
    }

    @Test(arguments: ScriptConfigTests.malformed)
    func malformedFileIsRefused(_ testCase: Malformed) {
        do {
            let (config, warnings) = try ScriptConfig.parse(testCase.bytes)
            Issue.record("accepted: \(config), warnings \(warnings)")
        } catch {
            #expect(error.code == .incorrectJSONConfigFile)
            #expect(error.step == "checks")
            for fragment in testCase.fragments {
                #expect(error.message.contains(fragment), "message \(error.message) lacks \(fragment)")
            }
            #expect(error.description.hasPrefix("IncorrectJSONConfigFile: "))
        }
    }

    // MARK: - Valid files

    /// Azure reads any string as a location and then finds no script there (`os.path.isfile`):
    /// a DB2 template's unexpanded `@BINDIR@/…`, an empty sample, a relative path. The config
    /// itself is valid — its continueBackupOnFailure holds — and the checks report the script
    /// as not found.
    @Test(arguments: [
        "@BINDIR@/db2_pre.sh", "", "scripts/pre.sh", "./script.sh", "~/script.sh", " /etc/azure/script.sh",
    ])
    func aLocationThatIsNotAnAbsolutePathIsKeptForTheChecks(location: String) throws {
        let text = Self.document(setting: "preScriptLocation", to: "\"\(location)\"")
            .replacingFirst(#""continueBackupOnFailure" : true"#, with: #""continueBackupOnFailure" : false"#)
        let (config, warnings) = try Self.parse(text)
        #expect(config.preScript.location == location)
        #expect(!config.continueBackupOnFailure)
        #expect(warnings.isEmpty)
    }

    @Test func defaultsAreApplied() throws {
        let (config, warnings) = try Self.parse(#"{"preScriptLocation": "/pre", "postScriptLocation": "/post"}"#)
        #expect(warnings.isEmpty)
        #expect(config.pluginName == nil)
        #expect(config.preScript == ScriptConfig.Script(location: "/pre", params: [], retries: 0))
        #expect(config.postScript == ScriptConfig.Script(location: "/post", params: [], retries: 0))
        #expect(config.timeoutSeconds == 10)
        #expect(config.timeoutSeconds == ScriptConfig.defaultTimeoutSeconds)
        #expect(config.continueBackupOnFailure == true)
        #expect(config.fsFreezeEnabled == true)
        #expect(config.pollSeconds == 3)
    }

    @Test func azureSampleFileParses() throws {
        // Microsoft's sample VMSnapshotScriptPluginConfig.json with the two paths filled in,
        // formatted as in the documentation.
        let sample = """
            {
                "pluginName" : "ScriptRunner",
                "preScriptLocation" : "/etc/azure/prescript.sh",
                "postScriptLocation" : "/etc/azure/postscript.sh",
                "preScriptParams" : ["", ""],
                "postScriptParams" : ["", ""],
                "preScriptNoOfRetries" : 0,
                "postScriptNoOfRetries" : 0,
                "timeoutInSeconds" : 30,
                "continueBackupOnFailure" : true,
                "fsFreezeEnabled" : true
            }
            """
        let (config, warnings) = try Self.parse(sample)
        #expect(warnings.isEmpty)
        #expect(
            config
                == ScriptConfig(
                    pluginName: "ScriptRunner",
                    preScript: .init(location: "/etc/azure/prescript.sh", params: ["", ""], retries: 0),
                    postScript: .init(location: "/etc/azure/postscript.sh", params: ["", ""], retries: 0),
                    timeoutSeconds: 30, continueBackupOnFailure: true, fsFreezeEnabled: true, pollSeconds: 3))

        // The same file saved on Windows (CRLF, tabs) and with the poll key some versions document.
        let windows = sample.split(separator: "\n").joined(separator: "\r\n")
            .replacingFirst("    \"pluginName\"", with: "\t\"pluginName\"")
            .replacingFirst("true\r\n}", with: "true,\r\n\t\"ScriptsExecutionPollTimeSeconds\" : 5\r\n}")
        let (fromWindows, windowsWarnings) = try Self.parse(windows)
        #expect(windowsWarnings.isEmpty)
        #expect(fromWindows.preScript == config.preScript)
        #expect(fromWindows.timeoutSeconds == 30)
        #expect(fromWindows.pollSeconds == 5)
    }

    @Test func baseDocumentIsValid() throws {
        let (config, warnings) = try Self.parse(Self.document())
        #expect(warnings.isEmpty)
        #expect(config.pluginName == "ScriptRunner")
        #expect(config.timeoutSeconds == 30)
    }

    @Test func emptyStringParamsPassTwoEmptyArguments() throws {
        let (config, _) = try Self.parse(Self.document())
        #expect(config.preScript.params == ["", ""])
        #expect(config.postScript.params == ["", ""])
        #expect(config.preScript.params.count == 2)
    }

    @Test func numbersInParamsAreKeptAsWritten() throws {
        let (config, warnings) = try Self.parse(
            Self.document(
                setting: "preScriptParams", to: #"[5, 1.5, "x", -2, 1e3, 0, 60.0, "a b", "--flag=1"]"#))
        #expect(warnings.isEmpty)
        #expect(config.preScript.params == ["5", "1.5", "x", "-2", "1e3", "0", "60.0", "a b", "--flag=1"])
        #expect(config.postScript.params == ["", ""])
    }

    @Test func paramsKeepUnicodeAndEscapes() throws {
        let (config, _) = try Self.parse(
            Self.document(
                setting: "postScriptParams", to: #"["caf\u00e9", "😀", "tab\there", "quote\"d", "$(rm -rf /)", "*"]"#))
        #expect(config.postScript.params == ["café", "😀", "tab\there", "quote\"d", "$(rm -rf /)", "*"])
    }

    @Test func emptyParamsArrayMeansNoArguments() throws {
        let (config, _) = try Self.parse(Self.document(setting: "preScriptParams", to: "[]"))
        #expect(config.preScript.params == [])
    }

    @Test(arguments: [
        (1, 1), (10, 10), (30, 30), (1799, 1799), (1800, 1800),
    ])
    func timeoutWithinTheLimitIsKept(written: Int, used: Int) throws {
        let (config, warnings) = try Self.parse(Self.document(setting: "timeoutInSeconds", to: "\(written)"))
        #expect(config.timeoutSeconds == used)
        #expect(warnings.isEmpty)
    }

    @Test(arguments: [1801, 3600, 100_000, 2_147_483_647])
    func timeoutOverTheLimitIsCappedWithAWarning(written: Int) throws {
        let (config, warnings) = try Self.parse(Self.document(setting: "timeoutInSeconds", to: "\(written)"))
        #expect(config.timeoutSeconds == 1800)
        #expect(config.timeoutSeconds == ScriptConfig.maximumTimeoutSeconds)
        #expect(warnings.count == 1)
        let warning = warnings.first ?? ""
        #expect(warning.contains("timeoutInSeconds"))
        #expect(warning.contains("\(written)"))
        #expect(warning.contains("1800"))
    }

    @Test(arguments: [0, 1, 3, 9])
    func retriesAreKept(retries: Int) throws {
        let (config, warnings) = try Self.parse(
            Self.document(setting: "preScriptNoOfRetries", to: "\(retries)")
                .replacingFirst(#""postScriptNoOfRetries" : 0"#, with: #""postScriptNoOfRetries" : \#(retries + 1)"#))
        #expect(config.preScript.retries == retries)
        #expect(config.postScript.retries == retries + 1)
        #expect(warnings.isEmpty)
    }

    /// 2147483647 retries of a failing script held the lock forever and grew the
    /// report past what could be read back. More than 10 are capped, with a warning.
    @Test(arguments: [11, 1_000, 2_147_483_647])
    func retriesOverTheLimitAreCappedWithAWarning(written: Int) throws {
        let (config, warnings) = try Self.parse(
            Self.document(setting: "preScriptNoOfRetries", to: "\(written)")
                .replacingFirst(#""postScriptNoOfRetries" : 0"#, with: #""postScriptNoOfRetries" : \#(written)"#))
        #expect(config.preScript.retries == ScriptConfig.maximumRetries && config.postScript.retries == 10)
        #expect(warnings.count == 2)
        #expect(warnings.allSatisfy { $0.contains("\(written)") && $0.contains("10 is used") })
    }

    @Test(arguments: 1...5)
    func pollSecondsFromOneToFiveAreAccepted(seconds: Int) throws {
        let (config, warnings) = try Self.parse(
            Self.document(setting: "ScriptsExecutionPollTimeSeconds", to: "\(seconds)"))
        #expect(config.pollSeconds == seconds)
        #expect(warnings.isEmpty)
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func booleansAreRead(continueOnFailure: Bool, freeze: Bool) throws {
        let text = Self.document(setting: "continueBackupOnFailure", to: "\(continueOnFailure)")
            .replacingFirst(#""fsFreezeEnabled" : true"#, with: #""fsFreezeEnabled" : \#(freeze)"#)
        let (config, _) = try Self.parse(text)
        #expect(config.continueBackupOnFailure == continueOnFailure)
        #expect(config.fsFreezeEnabled == freeze)
    }

    @Test func pluginNameIsOnlyALabel() throws {
        let (config, warnings) = try Self.parse(Self.document(setting: "pluginName", to: #""Something else""#))
        #expect(config.pluginName == "Something else")
        #expect(warnings.isEmpty)
        let (withoutName, _) = try Self.parse(Self.document(removing: ["pluginName"]))
        #expect(withoutName.pluginName == nil)
    }

    @Test func locationsAreKeptVerbatim() throws {
        let text = Self.document(setting: "preScriptLocation", to: #""/opt/my scripts/pre-ü.sh""#)
            .replacingFirst(#""/etc/azure/postscript.sh""#, with: #""/etc/azure/../azure/post.sh""#)
        let (config, _) = try Self.parse(text)
        #expect(config.preScript.location == "/opt/my scripts/pre-ü.sh")
        #expect(config.postScript.location == "/etc/azure/../azure/post.sh")
    }

    @Test func unknownKeysBecomeWarnings() throws {
        let (config, warnings) = try Self.parse(
            Self.document(adding: [
                ("comment", #""taken by the backup team""#),
                ("scriptsExecutionPollTimeSeconds", "3"),
                ("extra", #"{"nested": [1, 2, null]}"#),
            ]))
        #expect(config.timeoutSeconds == 30)
        #expect(config.pollSeconds == 3)
        #expect(warnings.count == 3)
        #expect(warnings.contains(#"unknown key "comment" is ignored"#))
        #expect(warnings.contains(#"unknown key "extra" is ignored"#))
        #expect(
            warnings.contains(
                #"unknown key "scriptsExecutionPollTimeSeconds" is ignored (did you mean "ScriptsExecutionPollTimeSeconds"?)"#
            ))
    }

    @Test func wrongCaseKeyGetsADidYouMeanWarningAndIsNotUsed() throws {
        // The wrong-case key is not read: the value of the real key (or its default) counts.
        let (config, warnings) = try Self.parse(
            Self.document(adding: [
                ("PreScriptLocation", #""/somewhere/else.sh""#),
                ("TimeoutInSeconds", "600"),
                ("FSFreezeEnabled", "false"),
            ]))
        #expect(config.preScript.location == "/etc/azure/prescript.sh")
        #expect(config.timeoutSeconds == 30)
        #expect(config.fsFreezeEnabled == true)
        #expect(warnings.contains(#"unknown key "PreScriptLocation" is ignored (did you mean "preScriptLocation"?)"#))
        #expect(warnings.contains(#"unknown key "TimeoutInSeconds" is ignored (did you mean "timeoutInSeconds"?)"#))
        #expect(warnings.contains(#"unknown key "FSFreezeEnabled" is ignored (did you mean "fsFreezeEnabled"?)"#))
    }

    @Test func wrongCaseRequiredKeyStillFailsAsMissing() {
        let text = Self.document(
            removing: ["preScriptLocation"],
            adding: [("PreScriptLocation", #""/etc/azure/prescript.sh""#)])
        let error = #expect(throws: HostError.self) {
            _ = try Self.parse(text)
        }
        #expect(error?.code == .incorrectJSONConfigFile)
        #expect(
            error?.message.hasPrefix(ErrorCode.incorrectJSONConfigFile.azureMessage! + " preScriptLocation: required")
                == true)
        // The warning is lost with the failure, so the error itself points at the wrong case.
        #expect(error?.message.contains(#"did you mean "preScriptLocation"?"#) == true)
        #expect(error?.message.contains(#""PreScriptLocation""#) == true)
    }

    @Test func unknownKeyWarningsFollowTheFileOrder() throws {
        let (_, warnings) = try Self.parse(Self.document(adding: [("zeta", "1"), ("alpha", "2"), ("mid", "3")]))
        #expect(
            warnings == [
                #"unknown key "zeta" is ignored"#, #"unknown key "alpha" is ignored"#, #"unknown key "mid" is ignored"#,
            ])
    }

    @Test func cappedTimeoutAndUnknownKeysWarnTogether() throws {
        let (config, warnings) = try Self.parse(
            Self.document(
                setting: "timeoutInSeconds", to: "7200",
                adding: [("note", "null")]))
        #expect(config.timeoutSeconds == 1800)
        #expect(warnings.count == 2)
        #expect(warnings.contains { $0.contains("7200") && $0.contains("1800") })
        #expect(warnings.contains(#"unknown key "note" is ignored"#))
    }

    @Test func knownKeysAreExactlyAzures() {
        #expect(
            ScriptConfig.knownKeys == [
                "pluginName", "preScriptLocation", "postScriptLocation", "preScriptParams", "postScriptParams",
                "preScriptNoOfRetries", "postScriptNoOfRetries", "timeoutInSeconds", "continueBackupOnFailure",
                "fsFreezeEnabled", "ScriptsExecutionPollTimeSeconds",
            ])
        #expect(ScriptConfig.defaultPath == "/etc/azure/VMSnapshotScriptPluginConfig.json")
    }

    @Test func keyOrderDoesNotMatter() throws {
        let reversed = "{\n" + Self.base.reversed().map { "\"\($0.key)\": \($0.json)" }.joined(separator: ",\n") + "}"
        let (a, _) = try Self.parse(reversed)
        let (b, _) = try Self.parse(Self.document())
        #expect(a == b)
    }

    @Test func pathOf4095BytesIsAccepted() throws {
        let path = "/" + String(repeating: "a", count: 4094)
        let (config, _) = try Self.parse(Self.document(setting: "preScriptLocation", to: "\"\(path)\""))
        #expect(config.preScript.location == path)
    }
}

extension String {
    /// The string with the first occurrence of `target` replaced; a case that relies on a
    /// replacement must not silently test the unchanged document.
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else {
            preconditionFailure("\(target) not found in \(self)")
        }
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}
