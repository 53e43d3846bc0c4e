import Glibc

/// CLOCK_MONOTONIC: one clock for every process on the machine, so the guard's timestamps and
/// the host's can be compared. A reading is an `Instant`; a span is the standard library's
/// `Duration`.
public enum Monotonic {
    /// A CLOCK_MONOTONIC reading. Its arithmetic saturates instead of trapping: `.max` (no
    /// deadline) plus any duration stays `.max`, and the time between two readings is never
    /// negative.
    public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
        /// Nanoseconds on CLOCK_MONOTONIC: the raw value the freeze journal, the wire and the
        /// plugin ABI carry. Convert there, and nowhere else.
        public let nanoseconds: UInt64

        public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

        public static var now: Instant { Instant(nanoseconds: Monotonic.now()) }

        /// Later than every reading: the deadline of what has none.
        public static let max = Instant(nanoseconds: .max)

        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

        /// `instant` moved by `duration`, saturating at `.max` (and at zero for a negative one).
        public static func + (instant: Instant, duration: Duration) -> Instant {
            Instant(nanoseconds: UInt64(clamping: Int128(instant.nanoseconds) + duration.attoseconds / 1_000_000_000))
        }

        public static func += (instant: inout Instant, duration: Duration) { instant = instant + duration }

        /// `instant` moved back by `duration`, saturating at zero.
        public static func - (instant: Instant, duration: Duration) -> Instant { instant + (.zero - duration) }

        /// The time from `earlier` to `later`; zero when `earlier` is in fact later.
        public static func - (later: Instant, earlier: Instant) -> Duration {
            later > earlier ? .nanoseconds(later.nanoseconds - earlier.nanoseconds) : .zero
        }

        public var description: String { "\(nanoseconds) ns" }
    }

    /// poll(2)'s timeout in milliseconds until `deadline`, rounded up (a deadline 1 ns away is
    /// 1 ms, not a busy loop); 0 once it has passed, -1 (wait forever) without one.
    public static func pollTimeout(until deadline: Instant?, now: Instant = .now) -> Int32 {
        guard let deadline else { return -1 }
        return Int32(clamping: (deadline - now).millisecondsRoundedUp)
    }

    // Raw nanoseconds: the clock callback of the plugin ABI (PluginWorkerProcess), and tests. The
    // engine and the plugins use `Instant` (PluginExport turns the ABI's deadlines into instants).

    /// The raw reading in nanoseconds.
    public static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// Milliseconds between two raw readings, as a fraction (0 if `end` is earlier).
    public static func milliseconds(from start: UInt64, to end: UInt64) -> Double {
        (Instant(nanoseconds: end) - Instant(nanoseconds: start)).inMilliseconds
    }

    /// `pollTimeout(until:)` for a raw deadline.
    public static func pollTimeout(until deadline: UInt64?) -> Int32 {
        pollTimeout(until: deadline.map(Instant.init(nanoseconds:)))
    }
}

extension Duration {
    /// A number of seconds from a configuration value, truncated to whole nanoseconds: zero for
    /// a negative value or NaN, and at most `UInt64.max` ns (584 years) for a huge one, where
    /// `.seconds(Double)` would trap.
    public static func seconds(clamping seconds: Double) -> Duration {
        let nanoseconds = seconds * 1e9
        guard nanoseconds > 0 else { return .zero }
        return .nanoseconds(nanoseconds < 18_446_744_073_709_551_616.0 ? UInt64(nanoseconds) : .max)
    }

    /// Whole nanoseconds (truncated), clamped to `0...UInt64.max`: for the boundaries that carry
    /// raw nanoseconds.
    public var clampedNanoseconds: UInt64 { UInt64(clamping: attoseconds / 1_000_000_000) }

    /// Whole milliseconds (truncated), clamped to `Int64`: for what counts in milliseconds.
    public var wholeMilliseconds: Int64 { whole(.milliseconds(1)) }

    /// Whole seconds (truncated), clamped to `Int64`: for what counts in seconds.
    public var wholeSeconds: Int64 { whole(.seconds(1)) }

    /// Milliseconds, a started one counting as a whole one (rounded up), clamped to `Int64`: for
    /// a timeout in milliseconds that must not end before the span does.
    public var millisecondsRoundedUp: Int64 { whole(.milliseconds(1), roundingUp: true) }

    /// Seconds, a started one counting as a whole one (rounded up), clamped to `Int64`: for a
    /// timeout in seconds that must not end before the span does.
    public var secondsRoundedUp: Int64 { whole(.seconds(1), roundingUp: true) }

    /// How many whole `unit`s this is, clamped to `Int64`: truncated toward zero, or with
    /// `roundingUp` the next whole number up (the ceiling). `unit` must be positive.
    public func whole(_ unit: Duration, roundingUp: Bool = false) -> Int64 {
        precondition(unit > .zero, "a unit of time must be positive")
        let (quotient, remainder) = attoseconds.quotientAndRemainder(dividingBy: unit.attoseconds)
        return Int64(clamping: roundingUp && remainder > 0 ? quotient + 1 : quotient)
    }

    /// Seconds as a fraction of whole nanoseconds (0 if negative): for what takes seconds as a
    /// decimal number.
    public var inSeconds: Double { Double(clampedNanoseconds) / 1e9 }

    /// Milliseconds as a fraction of whole nanoseconds, as reports show them (0 if negative).
    public var inMilliseconds: Double { Double(clampedNanoseconds) / 1_000_000 }
}

/// Wall-clock time as an ISO 8601 string with milliseconds, in UTC.
public func isoTimestamp() -> String {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return isoTimestamp(time)
}

/// A CLOCK_REALTIME reading in nanoseconds as `isoTimestamp()` writes it.
public func isoTimestamp(epochNanoseconds: UInt64) -> String {
    isoTimestamp(
        timespec(tv_sec: Int(epochNanoseconds / 1_000_000_000), tv_nsec: Int(epochNanoseconds % 1_000_000_000)))
}

/// CLOCK_REALTIME now, in ns since the epoch (as the freeze journal records wall-clock times).
public func epochNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// The wall-clock time when a CLOCK_MONOTONIC reading was taken, in ns since the epoch.
public func epochNanoseconds(monotonic: Monotonic.Instant) -> UInt64 {
    let now = epochNanoseconds()
    let elapsed = (Monotonic.Instant.now - monotonic).clampedNanoseconds
    return elapsed < now ? now - elapsed : 0
}

private func isoTimestamp(_ time: timespec) -> String {
    var seconds = time.tv_sec
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ value: Int32, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
        + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
        + "\(pad(Int32(time.tv_nsec / 1_000_000), 3))Z"
}

/// Seconds from an `isoTimestamp()` string until now (nil if it does not parse).
public func secondsSince(isoTimestamp text: String) -> Double? {
    guard let then = epochSeconds(isoTimestamp: text) else { return nil }
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 - then
}

/// An `isoTimestamp()` string ("2026-11-27T02:40:45.879Z") as seconds since the epoch.
public func epochSeconds(isoTimestamp text: String) -> Double? {
    let digits = text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    guard digits.count >= 6 else { return nil }
    var parts = tm()
    parts.tm_year = Int32(digits[0] - 1900)
    parts.tm_mon = Int32(digits[1] - 1)
    parts.tm_mday = Int32(digits[2])
    parts.tm_hour = Int32(digits[3])
    parts.tm_min = Int32(digits[4])
    parts.tm_sec = Int32(digits[5])
    return Double(timegm(&parts)) + (digits.count > 6 ? Double(digits[6]) / 1000 : 0)
}
