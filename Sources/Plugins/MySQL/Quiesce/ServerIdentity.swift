/// MariaDB or MySQL (Percona Server and other MySQL builds count as MySQL).
enum ServerFlavor: String, Sendable, Equatable {
    case mariadb = "MariaDB"
    case mysql = "MySQL"
}

/// A server version, compared numerically.
struct ServerVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
    var major: Int
    var minor: Int
    var patch: Int

    init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    static func < (lhs: ServerVersion, rhs: ServerVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }

    var description: String { "\(major).\(minor).\(patch)" }
}

/// What the server said it is at login.
struct ServerIdentity: Sendable, Equatable {
    var flavor: ServerFlavor
    var version: ServerVersion
    /// The full version string, e.g. `10.11.6-MariaDB-0+deb12u1`.
    var versionString: String

    /// Parses the handshake's version string (`mysql_get_server_info`). MariaDB says so in it;
    /// MariaDB 10.x before 11 may prefix `5.5.5-` for old replication clients (libmariadb
    /// strips it, but it is handled here too). Nil when no `X.Y.Z` can be read.
    static func parse(_ text: String) -> ServerIdentity? {
        var rest = Substring(text)
        let isMariaDB = text.lowercased().contains("mariadb")
        if isMariaDB && rest.hasPrefix("5.5.5-") { rest = rest.dropFirst(6) }
        let numbers = rest.prefix { $0.isNumber || $0 == "." }.split(separator: ".").compactMap { Int($0) }
        guard numbers.count >= 2 else { return nil }
        let version = ServerVersion(numbers[0], numbers[1], numbers.count > 2 ? numbers[2] : 0)
        return ServerIdentity(flavor: isMariaDB ? .mariadb : .mysql, version: version, versionString: text)
    }

    var summary: String { "\(flavor.rawValue) \(version)" }
}
