import PluginHostSupport

/// The time one call may use. A part of it is kept back from the plugin's own steps, so that
/// an abort (KILL from a second connection, close) still ends before the host's deadline.
struct CallBudget: Sendable {
    /// The host's deadline; nil when the call has none.
    let callDeadline: Monotonic.Instant?
    /// The deadline of the plugin's own steps.
    let work: Monotonic.Instant

    /// Without a host deadline, the plugin still bounds itself by this much.
    static let defaultSpan: Duration = .seconds(60)
    static let minimumReserve: Duration = .milliseconds(50)
    static let maximumReserve: Duration = .milliseconds(500)

    init(deadline: Monotonic.Instant?, now: Monotonic.Instant = .now) {
        callDeadline = deadline
        if let deadline {
            // A fifth of the time left, between the bounds (zero left once the deadline has passed).
            let reserve = min(max((deadline - now) / 5, Self.minimumReserve), Self.maximumReserve)
            work = deadline > now + reserve ? deadline - reserve : now
        } else {
            work = now + Self.defaultSpan
        }
    }

    var hasCallDeadline: Bool { callDeadline != nil }

    /// Where an abort may run to: the host's deadline, or a short bound without one (and at
    /// least a moment, even when the deadline has already passed: a waiting session must die).
    var abortDeadline: Monotonic.Instant {
        let now = Monotonic.Instant.now
        guard let callDeadline else { return now + .seconds(2) }
        return max(callDeadline, now + .milliseconds(100))
    }
}

/// Milliseconds with two decimals, rounded half up, for details (`0.84`).
func milliseconds(_ span: Duration) -> String {
    let hundredths = (span + .microseconds(5)).whole(.microseconds(10))
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
