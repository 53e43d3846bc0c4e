/// The global privileges of the current account, read from `SHOW GRANTS`.
///
/// Only `GRANT … ON *.* TO …` lines count (the lock statements need global privileges). Each
/// line's privilege list is taken between `GRANT ` and ` ON *.* `; nothing else of the line is
/// kept (MariaDB prints the password hash at its end: it is never stored, logged or reported).
struct GrantSet: Sendable, Equatable {
    /// `ALL PRIVILEGES` at global level (MariaDB, MySQL 5.7; MySQL 8 lists each one instead).
    var all: Bool
    var privileges: Set<String>

    static func parse(_ lines: [String]) -> GrantSet {
        var all = false
        var privileges = Set<String>()
        for line in lines {
            guard line.hasPrefix("GRANT "), let on = line.firstRange(of: " ON *.* TO ") else { continue }
            let list = line[line.index(line.startIndex, offsetBy: 6)..<on.lowerBound]
            for item in list.split(separator: ",") {
                let name = item.split(whereSeparator: \.isWhitespace).joined(separator: " ").uppercased()
                if name == "ALL PRIVILEGES" || name == "ALL" {
                    all = true
                } else if !name.isEmpty {
                    privileges.insert(name)
                }
            }
        }
        return GrantSet(all: all, privileges: privileges)
    }

    func satisfies(_ requirement: PrivilegeRequirement) -> Bool {
        all || requirement.anyOf.contains { privileges.contains($0) }
    }

    /// The requirements this account does not meet, in the plan's order.
    func missing(_ requirements: [PrivilegeRequirement]) -> [PrivilegeRequirement] {
        requirements.filter { !satisfies($0) }
    }

    /// `GRANT RELOAD, PROCESS ON *.* TO …` for a message.
    static func grantStatement(for missing: [PrivilegeRequirement], account: String) -> String {
        "GRANT \(missing.map(\.name).joined(separator: ", ")) ON *.* TO \(account)"
    }
}
