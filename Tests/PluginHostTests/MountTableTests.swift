import PluginHostSupport
import Testing

/// mountinfo is bytes: a mount point need not be UTF-8 (it was repaired into a path
/// that does not exist, passed `check`, and failed at the freeze).
@Suite("Mount table")
struct MountTableTests {
    static let line: [UInt8] =
        Array("36 25 7:3 / /mnt/caf".utf8) + [0xE9] + Array("\\040x rw,relatime shared:1 - ext4 /dev/loop3 rw\n".utf8)

    @Test func aMountPointThatIsNotUTF8IsMarkedAndShownEscaped() throws {
        let entry = try #require(MountTable.parse(bytes: Self.line).first)
        #expect(!entry.mountPointIsValidUTF8)
        #expect(entry.mountPoint == "/mnt/caf\\xE9 x")
        #expect(entry.fsType == "ext4" && entry.source == "/dev/loop3" && entry.device == "7:3")
    }

    @Test func utf8MountPointsAreKeptAsTheyAre() throws {
        let text = "36 25 7:3 / /mnt/caf\u{E9}\\040x rw - ext4 /dev/loop3 rw\n"
        let entry = try #require(MountTable.parse(text).first)
        #expect(entry.mountPointIsValidUTF8)
        #expect(entry.mountPoint == "/mnt/caf\u{E9} x")
    }
}
