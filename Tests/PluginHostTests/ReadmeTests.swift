import Glibc
import PluginHostSupport
import Testing

@testable import PluginHost

/// README.md's reference tables are generated from the types (`pluginhost __docs`); these
/// tests fail when one changes without the other.
@Suite("README reference tables")
struct ReadmeTests {
    static let readme: String = {
        let path = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        guard let file = try? FileDescriptor.open("/" + path + "/README.md", O_RDONLY),
            let bytes = try? file.readAll(limit: 1 << 22)
        else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }()

    @Test func errorCodeTableMatchesTheType() {
        #expect(Self.readme.contains(ReferenceTables.errorCodes), "regenerate with `pluginhost __docs`")
    }

    @Test func exitStatusTableMatchesTheType() {
        #expect(Self.readme.contains(ReferenceTables.exitStatuses), "regenerate with `pluginhost __docs`")
    }
}
