import Foundation
import PluginHostSupport
import PluginKit
import Testing

@testable import MySQLQuiesce

@Suite("MySQL plugin config")
struct ConfigTests {
    static func json(_ text: String) throws -> JSONValue {
        try JSONParser.parse(text)
    }

    @Test("defaults")
    func defaults() throws {
        let config = try MySQLConfig.parse(Self.json("{}"))
        #expect(config == MySQLConfig())
        #expect(config.mode == .auto)
        #expect(config.lockWaitTimeoutSeconds == 2)
        #expect(config.longQueryThresholdSeconds == 1)
        #expect(config.recordBinlogPosition)
        #expect(config.connectTimeoutSeconds == 5)
        #expect(config.socket == nil && config.host == nil && config.port == nil && config.optionFile == nil)
    }

    @Test("every key, valid")
    func everyKey() throws {
        let config = try MySQLConfig.parse(
            Self.json(
                """
                {"host": "127.0.0.1", "port": 3307, "optionFile": "/etc/pluginhost/mysql.cnf", "mode": "backup-stage",
                 "lockWaitTimeoutSeconds": 0.5, "longQueryThresholdSeconds": 0, "recordBinlogPosition": false,
                 "connectTimeoutSeconds": 3}
                """))
        #expect(config.host == "127.0.0.1")
        #expect(config.port == 3307)
        #expect(config.optionFile == "/etc/pluginhost/mysql.cnf")
        #expect(config.mode == .backupStage)
        #expect(config.lockWaitTimeoutSeconds == 0.5)
        #expect(config.longQueryThresholdSeconds == 0)
        #expect(!config.recordBinlogPosition)
        #expect(config.connectTimeoutSeconds == 3)
        for mode in LockMode.allCases {
            #expect(try MySQLConfig.parse(Self.json("{\"mode\": \"\(mode.rawValue)\"}")).mode == mode)
        }
    }

    /// Every rule: the config text and words the message must contain (the key, the rule).
    static let invalid: [(String, [String])] = [
        ("[]", ["must be a JSON object"]),
        ("{\"password\": \"secret\"}", ["unknown config key \"password\"", "option file"]),
        ("{\"user\": \"root\"}", ["unknown config key \"user\""]),
        ("{\"Socket\": \"/run/mysqld/mysqld.sock\"}", ["unknown config key \"Socket\""]),
        ("{\"socket\": 5}", ["\"socket\"", "expected a string", "integer 5"]),
        ("{\"socket\": \"run/mysqld.sock\"}", ["\"socket\"", "absolute path"]),
        ("{\"socket\": \"/\(String(repeating: "s", count: 120))\"}", ["\"socket\"", "107 bytes"]),
        ("{\"host\": \"\"}", ["\"host\"", "host name"]),
        ("{\"host\": \"db host\"}", ["\"host\"", "host name"]),
        ("{\"host\": null}", ["\"host\"", "expected a string", "null"]),
        ("{\"host\": \"127.0.0.1\", \"port\": \"3306\"}", ["\"port\"", "integer", "string \"3306\""]),
        ("{\"host\": \"127.0.0.1\", \"port\": 3306.0}", ["\"port\"", "integer", "number 3306.0"]),
        ("{\"host\": \"127.0.0.1\", \"port\": 0}", ["\"port\"", "out of range"]),
        ("{\"host\": \"127.0.0.1\", \"port\": 65536}", ["\"port\"", "out of range"]),
        ("{\"port\": 3306}", ["\"port\"", "needs \"host\""]),
        (
            "{\"socket\": \"/run/mysqld/mysqld.sock\", \"host\": \"127.0.0.1\"}",
            ["\"socket\" and \"host\"", "not both"]
        ),
        ("{\"optionFile\": \"client.cnf\"}", ["\"optionFile\"", "absolute path"]),
        ("{\"optionFile\": false}", ["\"optionFile\"", "expected a string", "boolean false"]),
        ("{\"mode\": \"fast\"}", ["\"mode\"", "backup-stage", "string \"fast\""]),
        ("{\"mode\": \"BACKUP-STAGE\"}", ["\"mode\""]),
        ("{\"lockWaitTimeoutSeconds\": \"2\"}", ["\"lockWaitTimeoutSeconds\"", "number of seconds", "string \"2\""]),
        ("{\"lockWaitTimeoutSeconds\": 0}", ["\"lockWaitTimeoutSeconds\"", "out of range"]),
        ("{\"lockWaitTimeoutSeconds\": -1}", ["\"lockWaitTimeoutSeconds\"", "out of range"]),
        ("{\"lockWaitTimeoutSeconds\": 3601}", ["\"lockWaitTimeoutSeconds\"", "out of range"]),
        ("{\"longQueryThresholdSeconds\": -0.5}", ["\"longQueryThresholdSeconds\"", "out of range"]),
        ("{\"longQueryThresholdSeconds\": true}", ["\"longQueryThresholdSeconds\"", "boolean true"]),
        ("{\"recordBinlogPosition\": \"true\"}", ["\"recordBinlogPosition\"", "true or false", "string \"true\""]),
        ("{\"recordBinlogPosition\": 1}", ["\"recordBinlogPosition\"", "integer 1"]),
        ("{\"connectTimeoutSeconds\": 0}", ["\"connectTimeoutSeconds\"", "out of range"]),
        ("{\"connectTimeoutSeconds\": 301}", ["\"connectTimeoutSeconds\"", "out of range"]),
        ("{\"connectTimeoutSeconds\": null}", ["\"connectTimeoutSeconds\"", "null"]),
    ]

    @Test("invalid configs name the key and the rule", arguments: invalid)
    func invalidConfig(_ text: String, _ words: [String]) throws {
        let json = try Self.json(text)
        do {
            _ = try MySQLConfig.parse(json)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.status == .invalidConfig)
            for word in words { #expect(error.message.contains(word), "\(error.message) lacks \(word)") }
        }
    }

    @Test("the plugin refuses an invalid config at create")
    func pluginRefusesInvalidConfig() throws {
        let error = expectPluginError(.invalidConfig) {
            _ = try MySQLPlugin(
                config: try! Self.json("{\"lockWaitTimeoutSeconds\": \"2\"}"), host: PluginHostServices())
        }
        #expect(error?.message.contains("lockWaitTimeoutSeconds") == true)
    }
}

@Suite("MySQL plugin option file")
struct OptionFileTests {
    @Test("a root file with mode 600 is accepted, through a symlink too; its password is noted, never kept")
    func accepted() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.optionFile(user: "backup", password: "s3cret")
        let option = try OptionFile(path: file)
        #expect(option.hasPassword)
        #expect(option.resolvedPath == file)
        #expect(option.libraryPath.hasPrefix("/proc/self/fd/"))
        #expect(try String(contentsOfFile: option.libraryPath, encoding: .utf8).contains("user=backup"))

        let link = "\(directory.path)/link.cnf"
        #expect(symlink(file, link) == 0)
        let viaLink = try OptionFile(path: link)
        #expect(viaLink.resolvedPath == file)

        let readOnly = try directory.write("ro.cnf", "[client]\nuser=x\n", mode: 0o400)
        #expect(try !OptionFile(path: readOnly).hasPassword)
    }

    /// name, content, mode, owner, words of the message.
    static let refused: [(String, String, mode_t, uid_t, [String])] = [
        ("world.cnf", "[client]\npassword=x\n", 0o644, 0, ["0644", "group or others", "chmod 600"]),
        ("group.cnf", "[client]\npassword=x\n", 0o640, 0, ["0640", "group or others"]),
        ("nobody.cnf", "[client]\npassword=x\n", 0o600, 65534, ["uid 65534", "owned by root"]),
        ("include.cnf", "[client]\n!include /etc/mysql/other.cnf\n", 0o600, 0, ["!include"]),
        ("includedir.cnf", "  !includedir /etc/mysql/conf.d\n[client]\n", 0o600, 0, ["!include"]),
    ]

    @Test("refused files name the file and the rule", arguments: refused)
    func refusedFile(_ name: String, _ content: String, _ mode: mode_t, _ owner: uid_t, _ words: [String]) throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write(name, content, mode: mode, owner: owner)
        let error = expectPluginError(.invalidConfig) { _ = try OptionFile(path: file) }
        #expect(error?.message.contains(file) == true)
        for word in words { #expect(error?.message.contains(word) == true, "\(error?.message ?? "") lacks \(word)") }
        #expect(error?.message.contains("password=x") == false)
    }

    @Test("a missing file, a directory, a symlink to a loose file and a writable directory are refused")
    func refusedOther() throws {
        let directory = try TemporaryDirectory()
        #expect(
            expectPluginError(.invalidConfig) { _ = try OptionFile(path: "\(directory.path)/absent.cnf") }?
                .message.contains("does not exist") == true)
        #expect(
            expectPluginError(.invalidConfig) { _ = try OptionFile(path: directory.path) }?
                .message.contains("not a regular file") == true)

        let loose = try directory.write("loose.cnf", "[client]\n", mode: 0o644)
        let link = "\(directory.path)/link.cnf"
        #expect(symlink(loose, link) == 0)
        let viaLink = expectPluginError(.invalidConfig) { _ = try OptionFile(path: link) }
        #expect(viaLink?.message.contains("resolved to \(loose)") == true)

        let shared = "\(directory.path)/shared"
        #expect(mkdir(shared, 0o777) == 0 && chmod(shared, 0o777) == 0)
        let file = "\(shared)/client.cnf"
        try Data("[client]\n".utf8).write(to: URL(fileURLWithPath: file))
        #expect(chmod(file, 0o600) == 0)
        let error = expectPluginError(.invalidConfig) { _ = try OptionFile(path: file) }
        #expect(error?.message.contains("directory \(shared) has mode 0777") == true)
        #expect(error?.message.contains("writable by group or other") == true)
        #expect(error?.message.contains("chmod go-w \(shared)") == true)
    }

    @Test("the plugin refuses a loose option file at create, naming it")
    func pluginRefuses() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.optionFile(user: "u", password: "p", mode: 0o644)
        let error = expectPluginError(.invalidConfig) {
            _ = try MySQLPlugin(config: .object([("optionFile", .string(file))]), host: PluginHostServices())
        }
        #expect(error?.message.contains("optionFile \(file)") == true)
    }

    @Test("password detection follows libmariadb's groups")
    func passwordDetection() {
        #expect(OptionFile.setsPassword("[client]\npassword = x\n"))
        #expect(OptionFile.setsPassword("[mysqld]\nport=1\n[client-mariadb]\n  password\n"))
        #expect(OptionFile.setsPassword("[client-server]\npassword=\"a b\"\n"))
        #expect(!OptionFile.setsPassword("[mysqld]\npassword=x\n"))
        #expect(!OptionFile.setsPassword("[client]\n# password=x\nuser=y\n"))
        #expect(!OptionFile.setsPassword("[client]\npassword_history=1\n"))
    }
}
