import Glibc
import PluginHostSupport
import PluginKit
import Testing

@testable import PostgreSQLQuiesce

/// The password file: a regular file owned by root with no group/other bits, checked on the
/// real file after resolving symlinks, in directories only root can change.
@Suite("PostgreSQL plugin: passfile", .enabled(if: getuid() == 0, "needs root (chown)"))
struct PassfileTests {
    func configure(_ passfile: String) throws -> PostgreSQLPlugin {
        try makePlugin(#"{"conninfo": "host=/nonexistent", "passfile": "\#(passfile)"}"#)
    }

    @Test("a root-owned 0600 file is accepted and handed to libpq as passfile")
    func accepted() throws {
        let directory = try TemporaryDirectory()
        let passfile = try directory.file("pgpass", "*:*:*:backup:pw\n", mode: 0o600)
        let plugin = try configure(passfile)
        #expect(plugin.connectionParameters.contains { $0.keyword == "passfile" && $0.value == passfile })
        _ = try configure(try directory.file("readonly", "", mode: 0o400))
    }

    struct Row: Sendable, CustomTestStringConvertible {
        let name: String
        let mode: mode_t
        let owner: uid_t
        let mentions: [String]
        var testDescription: String { name }
    }

    static let refused: [Row] = [
        Row(
            name: "mode 0644", mode: 0o644, owner: 0,
            mentions: ["mode 0644", "nothing for group or others", "chmod 600"]),
        Row(name: "mode 0640", mode: 0o640, owner: 0, mentions: ["mode 0640"]),
        Row(name: "mode 0604", mode: 0o604, owner: 0, mentions: ["mode 0604"]),
        Row(name: "owner 65534", mode: 0o600, owner: 65534, mentions: ["owned by uid 65534", "must be owned by root"]),
    ]

    @Test("refused: PH_INVALID_CONFIG naming the file and the rule", arguments: refused)
    func refusedFiles(_ row: Row) throws {
        let directory = try TemporaryDirectory()
        let passfile = try directory.file("pgpass", "*:*:*:*:pw\n", mode: row.mode)
        #expect(chown(passfile, row.owner, 0) == 0)
        let error = try #require(throws: PluginError.self) { try configure(passfile) }
        #expect(error.status == .invalidConfig)
        #expect(error.message.contains("\"passfile\"") && error.message.contains(passfile))
        for word in row.mentions { #expect(error.message.contains(word), "\(error.message) should mention \(word)") }
    }

    @Test("symlinks are resolved: the real file is checked and named")
    func symlinks() throws {
        let directory = try TemporaryDirectory()
        let good = try directory.file("good", "", mode: 0o600)
        #expect(symlink(good, directory.path + "/link-good") == 0)
        _ = try configure(directory.path + "/link-good")

        let bad = try directory.file("bad", "", mode: 0o644)
        #expect(symlink(bad, directory.path + "/link-bad") == 0)
        let error = try #require(throws: PluginError.self) { try configure(directory.path + "/link-bad") }
        #expect(error.message.contains("really \(bad)") && error.message.contains("mode 0644"))

        #expect(symlink(directory.path + "/missing", directory.path + "/dangling") == 0)
        let dangling = try #require(throws: PluginError.self) { try configure(directory.path + "/dangling") }
        #expect(dangling.message.contains("symlink to a file that does not exist"))
    }

    @Test("a directory is not a password file; nor is a file in a directory others can write to")
    func notRegularOrUnsafeDirectory() throws {
        let directory = try TemporaryDirectory()
        let error = try #require(throws: PluginError.self) { try configure(directory.path) }
        #expect(error.message.contains("not a regular file"))

        let passfile = try directory.file("pgpass", "", mode: 0o600)
        #expect(chmod(directory.path, 0o770) == 0)
        let unsafe = try #require(throws: PluginError.self) { try configure(passfile) }
        #expect(unsafe.message.contains("directory \(directory.path) has mode 0770"))
    }
}
