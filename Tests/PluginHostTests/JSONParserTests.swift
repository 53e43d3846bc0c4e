import Testing

@testable import PluginHost
@testable import PluginHostSupport

@Suite("JSONParser")
struct JSONParserTests {
    // MARK: - Helpers

    private static func number(_ text: String) -> JSONValue {
        .number(JSONNumber(text: text, isInteger: !text.contains(where: { ".eE".contains($0) })))
    }

    /// Parses and expects a syntax error; returns it for further checks.
    private static func failure(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONParser
        .SyntaxError?
    {
        failure(bytes: Array(text.utf8), sourceLocation: sourceLocation)
    }

    private static func failure(bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> JSONParser
        .SyntaxError?
    {
        do {
            let value = try JSONParser.parse(bytes)
            Issue.record("expected a syntax error, parsed \(value.serialized())", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Valid documents

    @Test func scalarsAtTheTopLevel() throws {
        #expect(try JSONParser.parse("null") == .null)
        #expect(try JSONParser.parse("true") == .bool(true))
        #expect(try JSONParser.parse("false") == .bool(false))
        #expect(try JSONParser.parse("0") == Self.number("0"))
        #expect(try JSONParser.parse("-0") == Self.number("-0"))
        #expect(try JSONParser.parse("\"text\"") == .string("text"))
        #expect(try JSONParser.parse("\"\"") == .string(""))
        #expect(try JSONParser.parse(" \t\r\n 42 \n\t\r ") == Self.number("42"))
    }

    @Test(arguments: [
        ("0", true), ("7", true), ("-7", true), ("1234567890", true), ("-0", true),
        ("0.5", false), ("-0.5", false), ("60.0", false), ("6e1", false), ("6E1", false),
        ("1e+2", false), ("1e-2", false), ("1.5e10", false), ("-1.25E-3", false),
        ("99999999999999999999999", true),
    ])
    func numbersKeepTheirText(text: String, isInteger: Bool) throws {
        let value = try JSONParser.parse(text)
        guard case .number(let number) = value else {
            Issue.record("expected a number, got \(value)")
            return
        }
        #expect(number.text == text)
        #expect(number.isInteger == isInteger)
    }

    @Test func numberAccessors() {
        #expect(JSONNumber(text: "60", isInteger: true).integerValue == 60)
        #expect(JSONNumber(text: "-3", isInteger: true).integerValue == -3)
        #expect(JSONNumber(text: "60.0", isInteger: false).integerValue == nil)
        #expect(JSONNumber(text: "6e1", isInteger: false).integerValue == nil)
        #expect(JSONNumber(text: "6e1", isInteger: false).doubleValue == 60)
        #expect(JSONNumber(text: "99999999999999999999", isInteger: true).integerValue == nil)
        #expect(JSONNumber(text: "9223372036854775807", isInteger: true).integerValue == Int.max)
    }

    @Test func sixtyAndSixtyPointZeroAndSixEOneAreDistinct() throws {
        let a = try JSONParser.parse("60")
        let b = try JSONParser.parse("60.0")
        let c = try JSONParser.parse("6e1")
        #expect(a != b)
        #expect(b != c)
        #expect(a != c)
    }

    @Test func arraysAndObjects() throws {
        #expect(try JSONParser.parse("[]") == .array([]))
        #expect(try JSONParser.parse("[ ]") == .array([]))
        #expect(try JSONParser.parse("{}") == .object([]))
        #expect(try JSONParser.parse("{ \n }") == .object([]))
        #expect(
            try JSONParser.parse("[1, \"a\", true, null, [], {}]")
                == .array([Self.number("1"), .string("a"), .bool(true), .null, .array([]), .object([])]))
        let object = try JSONParser.parse("{\"b\": 1, \"a\": [2, {\"c\": null}], \"\": \"empty key\"}")
        #expect(
            object
                == .object([
                    (key: "b", value: Self.number("1")),
                    (key: "a", value: .array([Self.number("2"), .object([(key: "c", value: .null)])])),
                    (key: "", value: .string("empty key")),
                ]))
        #expect(object["b"] == Self.number("1"))
        #expect(object[""] == .string("empty key"))
        #expect(object["missing"] == nil)
        #expect(JSONValue.array([])["b"] == nil)
    }

    @Test func objectsKeepKeyOrderAndOrderMatters() throws {
        let ab = try JSONParser.parse("{\"a\":1,\"b\":2}")
        let ba = try JSONParser.parse("{\"b\":2,\"a\":1}")
        #expect(ab != ba)
        guard case .object(let members) = ab else {
            Issue.record("not an object")
            return
        }
        #expect(members.map(\.key) == ["a", "b"])
    }

    @Test func keysDifferingOnlyInCaseAreNotDuplicates() throws {
        let value = try JSONParser.parse("{\"key\": 1, \"Key\": 2}")
        #expect(value["key"] == Self.number("1"))
        #expect(value["Key"] == Self.number("2"))
    }

    // MARK: - Strings and escapes

    @Test(arguments: [
        (#""\"""#, "\""), (#""\\""#, "\\"), (#""\/""#, "/"), (#""\b""#, "\u{08}"), (#""\f""#, "\u{0C}"),
        (#""\n""#, "\n"), (#""\r""#, "\r"), (#""\t""#, "\t"), (#""\u0041""#, "A"), (#""\u00e9""#, "é"),
        (#""\u00E9""#, "é"), (#""\u20AC""#, "€"), (#""\u0000""#, "\u{0}"), (#""\uFFFF""#, "\u{FFFF}"),
        (#""\uD83D\uDE00""#, "😀"), (#""\ud834\udd1e""#, "𝄞"), (#""\uDBFF\uDFFF""#, "\u{10FFFF}"),
        (#""a\tb\"c\\d""#, "a\tb\"c\\d"), (#""x\u0041y\u0042z""#, "xAyBz"),
        ("\"héllo wörld 😀\"", "héllo wörld 😀"), ("\"\u{7F}\"", "\u{7F}"),
    ])
    func escapes(json: String, expected: String) throws {
        #expect(try JSONParser.parse(json) == .string(expected))
    }

    @Test func surrogatePairBecomesOneScalar() throws {
        guard case .string(let text) = try JSONParser.parse(#""\uD83D\uDE00""#) else {
            Issue.record("not a string")
            return
        }
        #expect(text.unicodeScalars.count == 1)
        #expect(text.unicodeScalars.first?.value == 0x1F600)
    }

    // MARK: - Refused documents

    @Test(arguments: [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("{", "expected a quoted key"),
        ("{\"a\":", "unexpected end"),
        ("[1,", "unexpected end"),
        ("[1", "expected , or ]"),
        ("{\"a\":1", "expected , or }"),
        ("{\"a\" 1}", "expected :"),
        ("{a:1}", "expected a quoted key"),
        ("{'a':1}", "expected a quoted key"),
        ("['a']", "unexpected character"),
        ("{\"a\":1,}", "trailing comma before }"),
        ("[1,2,]", "trailing comma before ]"),
        ("[,]", "unexpected character ','"),
        ("[1 2]", "expected , or ]"),
        ("{\"a\":1 \"b\":2}", "expected , or }"),
        ("{\"a\":1,\"a\":2}", "duplicate key \"a\""),
        ("// c\n{}", "unexpected character"),
        ("{} // c", "unexpected text after the JSON value"),
        ("/* c */ {}", "unexpected character"),
        ("{\"a\": /* c */ 1}", "unexpected character"),
        ("# c\n{}", "unexpected character"),
        ("\"abc", "unterminated string"),
        ("\"abc\\", "unterminated escape"),
        ("\"\\u12", "unterminated \\u escape"),
        ("\"\\u12G4\"", "invalid hex digit"),
        ("\"\\x41\"", "invalid escape"),
        ("\"\\a\"", "invalid escape"),
        ("\"\\U0041\"", "invalid escape"),
        ("\"\\uD800\"", "lone high surrogate"),
        ("\"\\uD83Dx\"", "lone high surrogate"),
        ("\"\\uD83D\\n\"", "lone high surrogate"),
        ("\"\\uD83D\\u0041\"", "invalid low surrogate"),
        ("\"\\uD83D\\uD83D\"", "invalid low surrogate"),
        ("\"\\uDC00\"", "lone low surrogate"),
        ("\"\\uDE00\\uD83D\"", "lone low surrogate"),
        ("\"a\tb\"", "control character"),
        ("\"a\nb\"", "control character"),
        ("\"a\u{0}b\"", "control character"),
        ("\"a\u{1F}b\"", "control character"),
        ("01", "leading zeros"),
        ("-01", "leading zeros"),
        ("[00]", "leading zeros"),
        ("1.", "expected a digit after the decimal point"),
        ("1.e5", "expected a digit after the decimal point"),
        ("1e", "expected a digit in the exponent"),
        ("1e+", "expected a digit in the exponent"),
        ("-", "expected a digit in the number"),
        ("-a", "expected a digit in the number"),
        (".5", "unexpected character"),
        ("+1", "unexpected character"),
        ("0x1F", "unexpected text after the JSON value"),
        ("NaN", "unexpected character"),
        ("Infinity", "unexpected character"),
        ("-Infinity", "expected a digit in the number"),
        ("tru", "expected true"),
        ("nul", "expected null"),
        ("fals", "expected false"),
        ("True", "unexpected character"),
        ("None", "unexpected character"),
        ("truex", "unexpected text after the JSON value"),
        ("{} {}", "unexpected text after the JSON value"),
        ("[] x", "unexpected text after the JSON value"),
        ("1 2", "unexpected text after the JSON value"),
        ("\u{0C}{}", "unexpected character"),
        ("\u{A0}{}", "unexpected character"),
        ("{}\u{0}", "unexpected text after the JSON value"),
    ])
    func refused(json: String, messageFragment: String) {
        guard let error = Self.failure(json) else { return }
        #expect(error.message.contains(messageFragment), "\(error)")
        #expect(error.line >= 1)
        #expect(error.column >= 1)
        #expect(error.description.hasPrefix("line \(error.line), column \(error.column): "))
    }

    @Test func byteOrderMarkIsRefused() {
        let error = Self.failure(bytes: [0xEF, 0xBB, 0xBF] + Array("{}".utf8))
        #expect(error?.message.contains("byte-order mark") == true)
        #expect(error?.line == 1)
        #expect(error?.column == 1)
    }

    @Test(arguments: [
        [UInt8]([0x22, 0xFF, 0x22]),  // 0xFF never appears in UTF-8
        [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // a UTF-16 surrogate encoded in UTF-8
        [0x22, 0xE2, 0x82, 0x22],  // truncated sequence
        [0x22, 0x80, 0x22],  // lone continuation byte
        [0x7B, 0x7D, 0xFE],  // after a complete value
        [0xFE, 0xFF, 0x00, 0x7B, 0x00, 0x7D],  // UTF-16 with BOM
    ])
    func invalidUTF8IsRefused(bytes: [UInt8]) {
        let error = Self.failure(bytes: bytes)
        #expect(error?.message.contains("not valid UTF-8") == true, "\(String(describing: error))")
    }

    // MARK: - Error positions

    @Test func errorPositionsAreLineAndColumn() {
        let unexpected = Self.failure("[1,\n  x]")
        #expect(unexpected?.line == 2)
        #expect(unexpected?.column == 3)

        let trailing = Self.failure("{\"a\":1,}")
        #expect(trailing?.line == 1)
        #expect(trailing?.column == 8)

        let crlf = Self.failure("{\r\n  \"a\": 1,\r\n  \"b\": tru\r\n}")
        #expect(crlf?.line == 3)
        #expect(crlf?.column == 8)
        #expect(crlf?.message.contains("expected true") == true)

        let garbage = Self.failure("{}\n\n   }")
        #expect(garbage?.line == 3)
        #expect(garbage?.column == 4)
    }

    @Test func duplicateKeyIsReportedAtTheSecondKey() {
        let error = Self.failure("{\n  \"timeoutInSeconds\": 1,\n  \"timeoutInSeconds\": 2\n}")
        #expect(error?.message == "duplicate key \"timeoutInSeconds\"")
        #expect(error?.line == 3)
        #expect(error?.column == 3)
    }

    /// "é" (U+00E9) and "e\u0301" (e + combining acute) are canonically equivalent,
    /// so Swift's `String ==` calls them equal, but JSON keys are sequences of scalars: two keys.
    @Test func keysAreComparedByUnicodeScalars() throws {
        let value = try JSONParser.parse("{\"\u{E9}\": 1, \"e\\u0301\": 2}")
        guard case .object(let members) = value else {
            Issue.record("not an object")
            return
        }
        #expect(members.count == 2)
        #expect(value["\u{E9}"] == .number(JSONNumber(1)))
        #expect(value["e\u{301}"] == .number(JSONNumber(2)))
        #expect(value != (try JSONParser.parse("{\"\u{E9}\": 1, \"\u{E9}x\": 2}")))
        // The same scalars, escaped or not, are the same key.
        #expect(Self.failure("{\"\u{E9}\": 1, \"\\u00e9\": 2}")?.message == "duplicate key \"\u{E9}\"")
        // Strings compare by scalars too.
        #expect(JSONValue.string("\u{E9}") != JSONValue.string("e\u{301}"))
    }

    @Test func columnsCountCharactersNotBytes() {
        // "é" is two bytes, "😀" four; the column counts each as one character.
        let error = Self.failure("[\"é😀\", x]")
        #expect(error?.line == 1)
        #expect(error?.column == 8)
    }

    @Test func endOfDocumentErrorPointsPastTheLastCharacter() {
        let error = Self.failure("{\n\"a\": [1,")
        #expect(error?.message.contains("unexpected end") == true)
        #expect(error?.line == 2)
        #expect(error?.column == 9)
    }

    // MARK: - Depth

    @Test func maximumDepthIsAccepted() throws {
        let depth = JSONParser.maximumDepth
        #expect(depth == 64)
        let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        _ = try JSONParser.parse(arrays)
        let objects = String(repeating: "{\"k\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        _ = try JSONParser.parse(objects)
        let mixed =
            String(repeating: "[{\"k\":", count: depth / 2 - 1) + "[{}]" + String(repeating: "}]", count: depth / 2 - 1)
        _ = try JSONParser.parse(mixed)
    }

    @Test func oneLevelDeeperIsRefused() {
        let depth = JSONParser.maximumDepth + 1
        let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(Self.failure(arrays)?.message.contains("nested deeper than 64 levels") == true)
        let objects = String(repeating: "{\"k\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        #expect(Self.failure(objects)?.message.contains("nested deeper than 64 levels") == true)
    }

    @Test func veryDeepNestingFailsCleanly() {
        // Far deeper than any stack would allow for a naive recursive parser.
        let arrays = String(repeating: "[", count: 100_000)
        #expect(Self.failure(arrays)?.message.contains("nested deeper") == true)
    }

    @Test func depthIsNotCumulativeAcrossSiblings() throws {
        let depth = JSONParser.maximumDepth
        let deep = String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1)
        let siblings = "[" + Array(repeating: deep, count: 100).joined(separator: ",") + "]"
        _ = try JSONParser.parse(siblings)
    }

    // MARK: - Serialization

    @Test(arguments: [
        "null", "true", "false", "0", "-0", "60", "60.0", "6e1", "-1.25E-3", "\"\"", "[]", "{}",
        "[1,\"two\",true,false,null,[],{}]",
        "{\"b\":1,\"a\":[2,{\"c\":null}],\"\":\"\"}",
        "\"quote\\\" backslash\\\\ newline\\n cr\\r tab\\t\"",
        "\"\\u0000\\u0001\\u0008\\u000c\\u001f\"",
        "\"/ é 😀 \u{7F}\"",
        "{\"pluginName\":\"ScriptRunner\",\"preScriptParams\":[\"\",\"\"],\"timeoutInSeconds\":30}",
    ])
    func compactDocumentsSerializeToThemselves(json: String) throws {
        #expect(try JSONParser.parse(json).serialized() == json)
    }

    @Test func serializationRoundTrips() throws {
        let text = """
            {
              "pluginName" : "ScriptRunner",
              "preScriptParams" : ["", "a b", "\\u00e9\\uD83D\\uDE00", "\\b\\f\\/"],
              "nested" : { "deeper" : [ 1 , 2.50 , -3e+2 , { } ] },
              "flags" : [ true , false , null ]
            }
            """
        let value = try JSONParser.parse(text)
        let compact = value.serialized()
        #expect(!compact.contains("\n"))
        #expect(!compact.contains(" : "))
        #expect(try JSONParser.parse(compact) == value)
        #expect(try JSONParser.parse(compact).serialized() == compact)
        #expect(compact.contains("\"nested\":{\"deeper\":[1,2.50,-3e+2,{}]}"))
        #expect(compact.contains("\"\\u0008\\u000c/\""))
        #expect(compact.contains("\"é😀\""))
    }

    @Test func programmaticValuesRoundTrip() throws {
        let value = JSONValue.object([
            (key: "control", value: .string("\u{1}\u{1F}\n\"\\")),
            (key: "list", value: .array([.null, .bool(true), Self.number("1.5")])),
            (key: "key with \"quotes\"", value: .object([])),
        ])
        #expect(try JSONParser.parse(value.serialized()) == value)
        #expect(
            value.serialized() == #"{"control":"\u0001\u001f\n\"\\","list":[null,true,1.5],"key with \"quotes\"":{}}"#)
    }

    @Test func kindDescriptions() {
        #expect(JSONValue.null.kindDescription == "null")
        #expect(JSONValue.bool(false).kindDescription == "boolean false")
        #expect(Self.number("60").kindDescription == "integer 60")
        #expect(Self.number("60.0").kindDescription == "number 60.0")
        #expect(JSONValue.string("60").kindDescription == "string \"60\"")
        #expect(JSONValue.array([]).kindDescription == "an array")
        #expect(JSONValue.object([]).kindDescription == "an object")
        let long = JSONValue.string(String(repeating: "x", count: 200)).kindDescription
        #expect(long == "string \"" + String(repeating: "x", count: 60) + "\"")
    }
}
