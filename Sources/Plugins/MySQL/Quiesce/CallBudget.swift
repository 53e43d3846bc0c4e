import PluginHostSupport

/// The time one call may use. A part of it is kept back from the plugin's own steps, so that
/// an abort (KILL from a second connection, close) still ends before the host's deadline.
struct CallBudget: Sendable {
    /// The host's deadline (CLOCK_MONOTONIC ns), 0 when the call has none.
    let callDeadline: UInt64
    /// The deadline of the plugin's own steps.
    let work: UInt64

    /// Without a host deadline, the plugin still bounds itself by this much.
    static let defaultSeconds: Double = 60
    static let minimumReserve: UInt64 = 50_000_000
    static let maximumReserve: UInt64 = 500_000_000

    init(deadline: UInt64, now: UInt64 = Monotonic.now()) {
        callDeadline = deadline
        if deadline == 0 {
            work = now + nanoseconds(Self.defaultSeconds)
        } else {
            let total = deadline > now ? deadline - now : 0
            let reserve = min(max(total / 5, Self.minimumReserve), Self.maximumReserve)
            work = deadline > now + reserve ? deadline - reserve : now
        }
    }

    var hasCallDeadline: Bool { callDeadline > 0 }

    /// Where an abort may run to: the host's deadline, or a short bound without one (and at
    /// least a moment, even when the deadline has already passed: a waiting session must die).
    var abortDeadline: UInt64 {
        let now = Monotonic.now()
        return hasCallDeadline ? max(callDeadline, now + 100_000_000) : now + 2_000_000_000
    }
}

func nanoseconds(_ seconds: Double) -> UInt64 {
    seconds <= 0 ? 0 : UInt64(min(seconds, 1e9) * 1_000_000_000)
}

/// Milliseconds with two decimals, for details (`0.84`).
func milliseconds(_ nanoseconds: UInt64) -> String {
    let hundredths = (nanoseconds + 5_000) / 10_000
    let fraction = String(hundredths % 100)
    return "\(hundredths / 100)." + (fraction.count == 1 ? "0" : "") + fraction
}

/// Seconds for messages: `2`, `0.5`, `1.25`.
func secondsText(_ seconds: Double) -> String {
    if seconds == seconds.rounded() { return String(Int(seconds)) }
    var text = String(seconds)
    while text.hasSuffix("0") { text.removeLast() }
    return text
}
