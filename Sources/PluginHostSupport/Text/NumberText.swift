/// Numbers as reports, tables and messages write them: the one place that rounds for people.
public enum NumberText {
    /// At most `decimals` decimals, without trailing zeros: 12.345 → "12.3", 60.0 → "60".
    public static func decimal(_ value: Double, decimals: Int = 1) -> String {
        guard value.isFinite, abs(value) < 1e15 else { return String(value) }
        let rounded = (value * scale(decimals)).rounded() / scale(decimals)
        if rounded == rounded.rounded() { return String(Int(rounded)) }
        var text = fixed(rounded, decimals: decimals)
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }

    /// Exactly `decimals` decimals: 1.5 → "1.500" (for machine-read details).
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite, abs(value) * scale(decimals) < 9e18 else { return String(value) }
        let units = Int64((abs(value) * scale(decimals)).rounded())
        let whole = units / Int64(scale(decimals))
        let fraction = String(units % Int64(scale(decimals)))
        let sign = value < 0 && units != 0 ? "-" : ""
        guard decimals > 0 else { return sign + String(whole) }
        return "\(sign)\(whole).\(String(repeating: "0", count: decimals - fraction.count))\(fraction)"
    }

    /// Milliseconds for a table: "3.25 ms" below 10 ms, else "12.3 ms".
    public static func milliseconds(_ value: Double) -> String {
        value < 10 ? decimal(value, decimals: 2) + " ms" : decimal(value) + " ms"
    }

    /// A duration for a timeline: as `milliseconds`, and "1.25 s" from a second on.
    public static func duration(milliseconds value: Double) -> String {
        value >= 1000 ? decimal(value / 1000, decimals: 2) + " s" : milliseconds(value)
    }

    private static func scale(_ decimals: Int) -> Double {
        var scale = 1.0
        for _ in 0..<max(decimals, 0) { scale *= 10 }
        return scale
    }
}
