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

    @Test func wholeUnitsTruncatedOrRoundedUp() {
        // (span, whole seconds, seconds rounded up, whole ms, ms rounded up)
        let table: [(Duration, Int64, Int64, Int64, Int64)] = [
            (.zero, 0, 0, 0, 0),
            (.nanoseconds(1), 0, 1, 0, 1),
            (.nanoseconds(999_999), 0, 1, 0, 1),
            (.milliseconds(1), 0, 1, 1, 1),
            (.nanoseconds(1_000_001), 0, 1, 1, 2),
            (.nanoseconds(999_999_999), 0, 1, 999, 1_000),
            (.seconds(1), 1, 1, 1_000, 1_000),
            (.nanoseconds(1_000_000_001), 1, 2, 1_000, 1_001),
            (.milliseconds(1_500), 1, 2, 1_500, 1_500),
            (.seconds(60), 60, 60, 60_000, 60_000),
            // Negative spans: toward zero, or the ceiling.
            (.nanoseconds(-1), 0, 0, 0, 0),
            (.milliseconds(-1_500), -1, -1, -1_500, -1_500),
            // Clamped to Int64 where the count would not fit.
            (.seconds(Int64.max) * 2, Int64.max, Int64.max, Int64.max, Int64.max),
        ]
        for (span, seconds, secondsUp, milliseconds, millisecondsUp) in table {
            #expect(span.wholeSeconds == seconds, "\(span)")
            #expect(span.secondsRoundedUp == secondsUp, "\(span)")
            #expect(span.wholeMilliseconds == milliseconds, "\(span)")
            #expect(span.millisecondsRoundedUp == millisecondsUp, "\(span)")
        }
        // Any unit; what `(ns + 5_000) / 10_000` gave for hundredths of a millisecond.
        for nanoseconds: UInt64 in [0, 4_999, 5_000, 14_999, 15_000, 840_000, 1_234_567_890] {
            #expect(
                (Duration.nanoseconds(nanoseconds) + .microseconds(5)).whole(.microseconds(10))
                    == Int64((nanoseconds + 5_000) / 10_000))
        }
        #expect(Duration.seconds(7).whole(.seconds(2), roundingUp: true) == 4)
    }

    @Test func theOldIntegerArithmeticAndTheHelpersAgree() {
        // The plugins' conversions, before and after: nanoseconds n → the same count.
        let samples: [UInt64] = [
            0, 1, 999_999, 1_000_000, 1_000_001, 999_999_999, 1_000_000_000, 1_000_000_001,
            1_499_999_999, 59_999_999_999, 600_000_000_000, 1 << 40, 1 << 62, .max - 1, .max,
        ]
        for n in samples {
            let span = Duration.nanoseconds(n)
            #expect(span.wholeSeconds == Int64(n / 1_000_000_000))
            #expect(span.wholeMilliseconds == Int64(n / 1_000_000))
            #expect(span.secondsRoundedUp == Int64(n / 1_000_000_000 + (n % 1_000_000_000 == 0 ? 0 : 1)))
            #expect(span.millisecondsRoundedUp == Int64(n / 1_000_000 + (n % 1_000_000 == 0 ? 0 : 1)))
            #expect(span.inSeconds == Double(n) / 1e9)
        }
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
        let before = epochNanoseconds()
        let then = epochNanoseconds(monotonic: Instant.now - .seconds(10))
        let after = epochNanoseconds()
        // The reading is 10 s before some moment between `before` and `after`: at least 10 s
        // before `after`, and at most 10 s plus the bracket (and 1 ms of clock rate slack)
        // before `before`. A sign error lands 10 s after, a unit error far off either way.
        #expect(Int64(after) - Int64(then) >= 10_000_000_000)
        #expect(Int64(before) - Int64(then) <= 10_000_000_000 + (Int64(after) - Int64(before)) + 1_000_000)
    }
}
