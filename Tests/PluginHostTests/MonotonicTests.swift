import PluginHostSupport
import Testing

@Suite("Monotonic instants and durations")
struct MonotonicTests {
    typealias Instant = Monotonic.Instant

    @Test func addingSaturatesInsteadOfTrapping() {
        #expect(Instant.max + .seconds(1) == .max)
        #expect(Instant(nanoseconds: .max - 5) + .nanoseconds(10) == .max)
        #expect(Instant(nanoseconds: 1_000) + .seconds(Int64.max) == .max)
        #expect(Instant(nanoseconds: 1_000) + .nanoseconds(500) == Instant(nanoseconds: 1_500))
        #expect(Instant(nanoseconds: 1_000) + .seconds(2) == Instant(nanoseconds: 2_000_001_000))
        // Moving back never goes below the clock's zero.
        #expect(Instant(nanoseconds: 1_000) + .nanoseconds(-5_000) == Instant(nanoseconds: 0))
        #expect(Instant(nanoseconds: 1_000) - .nanoseconds(400) == Instant(nanoseconds: 600))
        #expect(Instant(nanoseconds: 1_000) - .seconds(1) == Instant(nanoseconds: 0))
        var deadline = Instant(nanoseconds: 7)
        deadline += .nanoseconds(3)
        #expect(deadline == Instant(nanoseconds: 10))
    }

    @Test func theTimeBetweenTwoInstantsIsNeverNegative() {
        let early = Instant(nanoseconds: 1_000_000)
        let late = Instant(nanoseconds: 3_500_000)
        #expect(late - early == .nanoseconds(2_500_000))
        #expect(early - late == .zero)
        #expect(early - early == .zero)
        #expect(Instant.max - Instant(nanoseconds: 0) == .nanoseconds(UInt64.max))
    }

    @Test func millisecondsAreAFractionOfWholeNanoseconds() {
        // As reports have always shown them: Double(ns) / 1_000_000.
        #expect((Instant(nanoseconds: 3_500_000) - Instant(nanoseconds: 1_000_000)).inMilliseconds == 2.5)
        #expect(Duration.nanoseconds(1).inMilliseconds == 0.000001)
        #expect(Duration.nanoseconds(123_456_789).inMilliseconds == Double(123_456_789) / 1_000_000)
        #expect(Duration.zero.inMilliseconds == 0)
        #expect(Duration.nanoseconds(-5).inMilliseconds == 0)
        #expect(Duration.nanoseconds(2_999_999).wholeMilliseconds == 2)
        #expect(Duration.nanoseconds(-2_000_000).wholeMilliseconds == -2)
    }

    @Test func pollTimeoutRoundsUp() {
        let now = Instant(nanoseconds: 10_000_000_000)
        let table: [(Instant?, Int32, String)] = [
            (nil, -1, "no deadline: wait forever"),
            (now + .nanoseconds(1), 1, "1 ns is 1 ms, not a busy loop"),
            (now + .milliseconds(1), 1, "exactly 1 ms"),
            (now + .nanoseconds(1_000_001), 2, "just over 1 ms"),
            (now + .milliseconds(250), 250, "whole milliseconds stay as they are"),
            (now, 0, "the deadline is now"),
            (Instant(nanoseconds: 5), 0, "a deadline in the past"),
            (.max, Int32.max, "a deadline far away is clamped"),
        ]
        for (deadline, expected, why) in table {
            #expect(Monotonic.pollTimeout(until: deadline, now: now) == expected, "\(why)")
        }
        #expect(Monotonic.pollTimeout(until: .max, now: Instant(nanoseconds: 0)) == Int32.max)
    }

    @Test func secondsFromAConfigurationValue() {
        #expect(Duration.seconds(clamping: 0) == .zero)
        #expect(Duration.seconds(clamping: 1.5) == .milliseconds(1500))
        #expect(Duration.seconds(clamping: 60) == .seconds(60))
        // What `UInt64(seconds * 1e9)` gave: truncated to whole nanoseconds.
        #expect(Duration.seconds(clamping: 0.1) == .nanoseconds(UInt64(0.1 * 1e9)))
        #expect(Duration.seconds(clamping: 1e-10) == .zero)
        #expect(Duration.seconds(clamping: -3) == .zero)
        #expect(Duration.seconds(clamping: .nan) == .zero)
        // Huge values saturate where `.seconds(Double)` would trap.
        #expect(Duration.seconds(clamping: 1e30) == .nanoseconds(UInt64.max))
        #expect(Duration.seconds(clamping: .infinity) == .nanoseconds(UInt64.max))
        #expect(Instant(nanoseconds: 1) + .seconds(clamping: 1e30) == .max)
    }

    @Test func rawReadingsAndInstantsAgree() {
        let before = Monotonic.now()
        let instant = Instant.now
        let after = Monotonic.now()
        #expect(before <= instant.nanoseconds && instant.nanoseconds <= after)
        #expect(Monotonic.milliseconds(from: 1_000_000, to: 3_500_000) == 2.5)
        #expect(Monotonic.milliseconds(from: 3_500_000, to: 1_000_000) == 0)
    }

    @Test func aMonotonicReadingAsWallClockTime() {
        let wall = epochNanoseconds()
        let then = epochNanoseconds(monotonic: Instant.now - .seconds(10))
        #expect(then < wall)
        #expect(epochNanoseconds(monotonic: Instant(nanoseconds: 0)) <= wall)
    }
}
