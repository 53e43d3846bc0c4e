import Glibc
import PluginHostSupport

/// One line per operation to the system log (syslog or journald, through `/dev/log`), sent once
/// the operation has thawed: an admin sees what happened in `journalctl -t pluginhost` or
/// /var/log/syslog without reading reports.
///
/// A datagram in the format of glibc's syslog(3) (`<PRI>Mmm dd hh:mm:ss pluginhost[pid]: …`,
/// facility daemon), sent without blocking: a busy or absent log daemon never delays or fails
/// the operation. `PLUGINHOST_TEST_SYSLOG_SOCKET` names another datagram socket instead of
/// `/dev/log`; only the tests set it.
public enum SystemLog {
    public static let defaultSocket = "/dev/log"
    static let testSocketVariable = "PLUGINHOST_TEST_SYSLOG_SOCKET"

    /// syslog(3) facility and severities.
    static let facilityDaemon: Int32 = 3 << 3
    enum Severity: Int32 {
        case error = 3, warning = 4, info = 6
    }

    /// The summary line of a finished operation (without the syslog header).
    public static func summary(of report: OperationReport) -> String {
        var fields = [
            "operation=\(report.operationID)",
            "command=\(report.command.split(separator: " ").joined(separator: "-"))",
            "result=\(report.result.rawValue)",
            "consistency=\(report.consistency.rawValue)",
            "snapshot=\(report.snapshotTaken ? "taken" : "none")",
            "exit=\(report.exitStatus.rawValue)",
        ]
        if let freeze = report.freeze {
            fields.append("frozen_mounts=\(freeze.mounts.filter { $0.freeze == .frozen }.count)")
            fields.append("freeze_window_ms=\(freeze.windowMs.map { formatMilliseconds($0) } ?? "none")")
            if let cause = freeze.thawCause { fields.append("thaw=\(cause.rawValue)") }
        } else {
            fields.append("freeze_window_ms=none")
        }
        fields.append("duration_ms=\(formatMilliseconds(report.durationMs))")
        var codes: [String] = []
        for error in report.errors where !codes.contains(error.code.rawValue) { codes.append(error.code.rawValue) }
        fields.append("errors=\(codes.isEmpty ? "none" : codes.joined(separator: ","))")
        fields.append("version=\(BuildInfo.version)")
        return fields.joined(separator: " ")
    }

    /// Sends the summary of `report`, unless something may still be frozen (the log daemon
    /// could write to a frozen filesystem and hang): `recover` logs that operation later.
    /// Returns whether the datagram was sent.
    @discardableResult
    public static func record(_ report: OperationReport) -> Bool {
        if report.freeze?.mayStillBeFrozen == true { return false }
        let severity: Severity =
            switch report.result {
            case .succeeded: .info
            case .degraded: .warning
            case .failed: .error
            }
        return send(summary(of: report), severity: severity)
    }

    /// Sends one message; false when there is no log socket or it does not take the datagram now.
    static func send(_ message: String, severity: Severity) -> Bool {
        let path = getenv(testSocketVariable).map { String(cString: $0) } ?? defaultSocket
        guard let socket = try? FileDescriptor.socket(.datagram), let address = UnixSocketAddress(path: path) else {
            return false
        }
        // Glibc's syslog(3) header; journald and rsyslog both parse it.
        let line = "<\(facilityDaemon | severity.rawValue)>\(timestamp()) pluginhost[\(getpid())]: \(message)"
        let bytes = Array(line.utf8.prefix(8192))
        return (try? socket.send(bytes, to: address, wait: false)) == bytes.count
    }

    /// "Dec  1 14:48:00", local time, as syslog(3) writes it.
    static func timestamp() -> String {
        var now = time(nil)
        var local = tm()
        localtime_r(&now, &local)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let day = local.tm_mday < 10 ? " \(local.tm_mday)" : "\(local.tm_mday)"
        return "\(months[Int(local.tm_mon)]) \(day) \(two(local.tm_hour)):\(two(local.tm_min)):\(two(local.tm_sec))"
    }

    private static func formatMilliseconds(_ value: Double) -> String { NumberText.decimal(value) }
}
