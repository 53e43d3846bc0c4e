import PluginHostSupport

/// One etcd client URL, `http://HOST:PORT` or `https://HOST:PORT` (IPv6 in brackets), as
/// given to `--etcd` or the host config's `group.etcd`. Parsed here so that the host checks
/// what the group process will use.
public struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var secure: Bool
    /// A DNS name or an address literal (IPv6 without its brackets).
    public var host: String
    public var port: UInt16

    public init(secure: Bool, host: String, port: UInt16) {
        self.secure = secure
        self.host = host
        self.port = port
    }

    public var description: String {
        "\(secure ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// The `Host:` header value.
    public var authority: String { "\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// Parses one URL; the error says what is wrong.
    public static func parse(_ text: String) -> Result<EtcdEndpoint, EndpointError> {
        let secure: Bool
        var rest: Substring
        if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else {
            return .failure(EndpointError(text, "it must start with http:// or https://"))
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.contains("/") || rest.contains("@") || rest.contains("?") {
            return .failure(EndpointError(text, "give only the scheme, host and port (no path, user or query)"))
        }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                return .failure(EndpointError(text, "an IPv6 address needs a port: https://[ADDRESS]:PORT"))
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            portText = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else {
                return .failure(EndpointError(text, "give the port (etcd's client port is usually 2379)"))
            }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty,
            host.utf8.allSatisfy({
                $0.isASCIILetter || $0.isASCIIDigit || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
                    || $0 == UInt8(ascii: ":")
            })
        else {
            return .failure(EndpointError(text, "the host must be a DNS name or an IP address"))
        }
        guard let port = UInt16(portText), port > 0 else {
            return .failure(EndpointError(text, "the port must be a number from 1 to 65535"))
        }
        return .success(EtcdEndpoint(secure: secure, host: String(host), port: port))
    }

    /// Parses a comma-separated list (`--etcd URL[,URL…]`).
    public static func parseList(_ text: String) -> Result<[EtcdEndpoint], EndpointError> {
        var endpoints: [EtcdEndpoint] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            switch parse(String(item)) {
            case .success(let endpoint): endpoints.append(endpoint)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(endpoints)
    }
}

public struct EndpointError: Error, Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var problem: String

    public init(_ text: String, _ problem: String) {
        self.text = text
        self.problem = problem
    }

    public var description: String { "etcd endpoint \"\(text)\": \(problem)" }
}

/// Base64 (RFC 4648, with padding): etcd's JSON gateway carries keys and values as base64.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index + 2 < input.count {
            let value = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            out += [
                alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)],
                alphabet[Int(value & 63)],
            ]
            index += 3
        }
        let left = input.count - index
        if left == 1 {
            let value = UInt32(input[index]) << 16
            out += [
                alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "="),
            ]
        } else if left == 2 {
            let value = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
            out += [
                alphabet[Int(value >> 18 & 63)], alphabet[Int(value >> 12 & 63)], alphabet[Int(value >> 6 & 63)],
                UInt8(ascii: "="),
            ]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func encode(_ text: String) -> String { encode(Array(text.utf8)) }

    /// nil for anything that is not canonical padded base64.
    public static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            var value: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let byte = input[index + offset]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): digit = UInt32(byte - UInt8(ascii: "A"))
                case UInt8(ascii: "a")...UInt8(ascii: "z"): digit = UInt32(byte - UInt8(ascii: "a")) + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0")) + 52
                case UInt8(ascii: "+"): digit = 62
                case UInt8(ascii: "/"): digit = 63
                case UInt8(ascii: "=") where index + 4 == input.count && offset >= 2:
                    padding += 1
                    digit = 0
                default: return nil
                }
                if padding > 0 && byte != UInt8(ascii: "=") { return nil }
                value = value << 6 | digit
            }
            out.append(UInt8(value >> 16 & 0xFF))
            if padding < 2 { out.append(UInt8(value >> 8 & 0xFF)) }
            if padding < 1 { out.append(UInt8(value & 0xFF)) }
            index += 4
        }
        return out
    }
}
