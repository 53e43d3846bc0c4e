import PluginHostSupport
import Testing

@testable import PluginKit

/// The ABI's deadlines as a Swift plugin sees them: raw CLOCK_MONOTONIC nanoseconds become
/// instants in PluginExport, and the ABI's 0 ("none") becomes nil.
@Suite("Plugin call deadlines")
struct PluginCallTests {
    @Test func theABIsRawDeadlinesBecomeInstants() {
        #expect(PluginExport.instant(abi: 0) == nil)
        #expect(PluginExport.instant(abi: nil) == nil)
        #expect(PluginExport.instant(abi: 1) == Monotonic.Instant(nanoseconds: 1))
        #expect(PluginExport.instant(abi: 5_000_000_000) == Monotonic.Instant(nanoseconds: 5_000_000_000))
        #expect(PluginExport.instant(abi: .max) == .max)
    }

    @Test func remainingAndCheckDeadline() throws {
        let none = PluginCall(deadline: nil)
        #expect(none.remaining == nil && none.holdUntil == nil)
        try none.checkDeadline("waiting")

        let passed = PluginCall(deadline: Monotonic.Instant(nanoseconds: 1))
        #expect(passed.remaining == .zero)
        let error = try #require(throws: PluginError.self) { try passed.checkDeadline("waiting") }
        #expect(error.status == .timeout)
        #expect(error.message == "the deadline passed while waiting")

        let later = PluginCall(deadline: .now + .seconds(60), holdUntil: .now + .seconds(120))
        let remaining = try #require(later.remaining)
        #expect(remaining > .seconds(50) && remaining <= .seconds(60))
        try later.checkDeadline("waiting")
    }
}
