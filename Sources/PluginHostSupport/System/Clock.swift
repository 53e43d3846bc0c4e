import Glibc

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so the guard's
/// timestamps and the host's can be compared.
public enum Monotonic {
    public static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// Milliseconds between two readings, as a fraction.
    public static func milliseconds(from start: UInt64, to end: UInt64) -> Double {
        end >= start ? Double(end - start) / 1_000_000 : 0
    }

    /// poll(2) timeout in milliseconds until `deadline` (rounded up), or -1 without one.
    public static func pollTimeout(until deadline: UInt64?) -> Int32 {
        guard let deadline else { return -1 }
        let now = now()
        if deadline <= now { return 0 }
        return Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }
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

/// The wall-clock time when a CLOCK_MONOTONIC reading was taken, in ns since the epoch.
public func epochNanoseconds(monotonic: UInt64) -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    let now = UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    let elapsed = Monotonic.now() &- monotonic
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
