import CPluginHostShim
import CPluginHostTLS
import Glibc
import PluginHostSupport
import PluginHostWire

/// The client certificate files for etcd (`--cert/--key/--cacert`, as etcdctl names them).
struct TLSFiles: Sendable, Equatable {
    var caFile: String
    var certFile: String?
    var keyFile: String?
}

/// Why a call to etcd failed: no answer from this endpoint (try another), or an answer that
/// is an error.
struct EtcdError: Error, Sendable, CustomStringConvertible {
    enum Kind: Sendable { case connection, server }
    var kind: Kind
    var message: String

    static func connection(_ message: String) -> EtcdError { EtcdError(kind: .connection, message: message) }
    static func server(_ message: String) -> EtcdError { EtcdError(kind: .server, message: message) }

    var description: String { message }
}

/// One HTTP/1.1 connection to one etcd endpoint (plain, or TLS through the system's OpenSSL),
/// on a non-blocking socket: every call takes a deadline.
/// Requests are sent one at a time; the connection is kept for the next one.
final class HTTPConnection {
    let endpoint: EtcdEndpoint
    private var socket: FileDescriptor?
    private var tls: OpaquePointer?
    /// Received bytes not yet consumed.
    private var buffer: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 65536)
    private var errorText = [CChar](repeating: 0, count: 512)

    init(endpoint: EtcdEndpoint, tls files: TLSFiles?, deadline: Monotonic.Instant) throws(EtcdError) {
        self.endpoint = endpoint
        socket = try Self.connect(endpoint, deadline: deadline)
        if endpoint.secure {
            guard let files else {
                close()
                throw .connection("\(endpoint) is https, but no CA certificate is configured")
            }
            let client = ph_tls_connect(
                descriptor, endpoint.host, files.caFile, files.certFile, files.keyFile,
                Self.shimDeadline(deadline), &errorText, errorText.count)
            guard let client else {
                let message = errorMessage
                close()
                throw .connection("\(endpoint): \(message)")
            }
            tls = client
        }
    }

    deinit { close() }

    /// The socket, -1 once closed.
    var descriptor: Int32 { socket?.rawValue ?? -1 }

    /// The TLS shim takes its deadline in milliseconds of CLOCK_MONOTONIC.
    private static func shimDeadline(_ deadline: Monotonic.Instant) -> UInt64 { deadline.nanoseconds / 1_000_000 }

    /// What the TLS shim wrote into `errorText`.
    private var errorMessage: String {
        String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func close() {
        if let tls { ph_tls_free(tls) }
        tls = nil
        socket = nil
    }

    /// Bytes are waiting that poll(2) on the descriptor would not report.
    var hasBufferedInput: Bool { !buffer.isEmpty || (tls.map { ph_tls_pending($0) > 0 } ?? false) }

    // MARK: - Requests

    /// POSTs `body` (JSON) to `path` and reads the whole answer.
    func post(_ path: String, body: String, deadline: Monotonic.Instant) throws(EtcdError) -> (
        status: Int, body: [UInt8]
    ) {
        try sendRequest(path, body: body, deadline: deadline)
        var reader = ResponseReader()
        var bodyBytes: [UInt8] = []
        while true {
            do {
                bodyBytes += try reader.consume(&buffer)
            } catch {
                throw .connection("\(endpoint): \(error)")
            }
            if reader.complete {
                if reader.closeAfter { close() }
                return (reader.status, bodyBytes)
            }
            guard try fill(until: deadline) else { throw .connection("\(endpoint) closed the connection mid-answer") }
        }
    }

    /// Sends a request whose answer is a stream (a watch); read it with `ResponseReader`.
    func sendRequest(_ path: String, body: String, deadline: Monotonic.Instant) throws(EtcdError) {
        guard descriptor >= 0 else { throw .connection("\(endpoint): the connection is closed") }
        let request =
            "POST \(path) HTTP/1.1\r\nHost: \(endpoint.authority)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        try write(Array(request.utf8), deadline: deadline)
    }

    /// Reads what arrives until `deadline` into the buffer; false at the end of the stream.
    /// Returns true at once when something was read.
    @discardableResult
    func fill(until deadline: Monotonic.Instant) throws(EtcdError) -> Bool {
        guard let socket else { return false }
        if let tls {
            let count = ph_tls_read(tls, &chunk, chunk.count, Self.shimDeadline(deadline), &errorText, errorText.count)
            if count > 0 {
                buffer += chunk[0..<count]
                return true
            }
            if count == 0 { return false }
            if count == -2 { throw .connection("\(endpoint): no answer in time") }
            throw .connection("\(endpoint): \(errorMessage)")
        }
        while true {
            let received: ArraySlice<UInt8>?
            do {
                received = try socket.receiveAvailable(into: &chunk)
            } catch {
                throw .connection("\(endpoint): \(error)")
            }
            if let received {
                if received.isEmpty { return false }
                buffer += received
                return true
            }
            if (try? Poll.wait(for: socket.rawValue, until: deadline)) == false {
                throw .connection("\(endpoint): no answer in time")
            }
        }
    }

    /// Reads whatever is available now, without waiting; false at the end of the stream.
    func fillAvailable() throws(EtcdError) -> Bool {
        do {
            return try fill(until: Monotonic.Instant.now)
        } catch let error where error.message.hasSuffix("no answer in time") {
            return true
        }
    }

    /// Takes bytes out of the buffer through `reader`.
    func consume(with reader: inout ResponseReader) throws(EtcdError) -> [UInt8] {
        do {
            return try reader.consume(&buffer)
        } catch {
            throw .connection("\(endpoint): \(error)")
        }
    }

    private func write(_ bytes: [UInt8], deadline: Monotonic.Instant) throws(EtcdError) {
        if let tls {
            if ph_tls_write_all(tls, bytes, bytes.count, Self.shimDeadline(deadline), &errorText, errorText.count) != 0
            {
                throw .connection("\(endpoint): \(errorMessage)")
            }
            return
        }
        guard let socket else { throw .connection("\(endpoint): \(SystemError("send", errno: EBADF))") }
        var offset = 0
        while offset < bytes.count {
            let sent: Int
            do {
                sent = try socket.send(bytes[offset...], wait: false)
            } catch {
                throw .connection("\(endpoint): \(error)")
            }
            if sent > 0 {
                offset += sent
                continue
            }
            if (try? Poll.wait(for: socket.rawValue, .writable, until: deadline)) == false {
                throw .connection("\(endpoint): cannot send in time")
            }
        }
    }

    /// A non-blocking TCP connection to the first address of the endpoint that answers.
    private static func connect(_ endpoint: EtcdEndpoint, deadline: Monotonic.Instant) throws(EtcdError)
        -> FileDescriptor
    {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard rc == 0, let list else {
            throw .connection("\(endpoint): cannot resolve \(endpoint.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var failure = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            entry = current.pointee.ai_next
            let socket: FileDescriptor
            do {
                socket = try FileDescriptor.socket(family: current.pointee.ai_family, .stream, nonBlocking: true)
            } catch {
                failure = "\(error)"
                continue
            }
            try? socket.setOption(level: Int32(IPPROTO_TCP), TCP_NODELAY, to: 1)
            do {
                try socket.connect(to: current.pointee.ai_addr, length: current.pointee.ai_addrlen)
                return socket
            } catch let error where error.errno == EINPROGRESS || error.errno == EINTR {
                // The connection goes on in the background: wait until it is writable.
                let ready: Bool
                do {
                    ready = try Poll.wait(for: socket.rawValue, .writable, until: deadline)
                } catch {
                    failure = String(cString: strerror(error.errno))
                    continue
                }
                if !ready {
                    failure = "no answer in time"
                    continue
                }
                do {
                    let error = try socket.socketError()
                    if error == 0 { return socket }
                    failure = String(cString: strerror(error))
                } catch {
                    failure = String(cString: strerror(error.errno))
                }
            } catch {
                failure = String(cString: strerror(error.errno))
            }
        }
        throw .connection("\(endpoint): cannot connect: \(failure)")
    }
}

/// Parses an HTTP/1.1 response as its bytes arrive: the head, then the body by Content-Length
/// or chunked transfer coding (trailers skipped). `consume` returns the body bytes decoded so far.
struct ResponseReader {
    struct ProtocolError: Error, CustomStringConvertible {
        var description: String
    }

    private enum State { case head, length(Int), chunkSize, chunkData(Int), chunkEnd, trailers, done, untilClose }
    private var state = State.head
    private(set) var status = 0
    private(set) var closeAfter = false

    var complete: Bool { if case .done = state { true } else { false } }

    static let maximumHead = 64 * 1024

    mutating func consume(_ buffer: inout [UInt8]) throws(ProtocolError) -> [UInt8] {
        var body: [UInt8] = []
        var index = 0
        defer { buffer.removeFirst(index) }
        while true {
            switch state {
            case .head:
                guard let end = Self.find([13, 10, 13, 10], in: buffer, from: index) else {
                    if buffer.count - index > Self.maximumHead {
                        throw ProtocolError(description: "an answer's header is too long")
                    }
                    return body
                }
                try parseHead(buffer[index..<end])
                index = end + 4
            case .length(let remaining):
                let take = min(remaining, buffer.count - index)
                body += buffer[index..<index + take]
                index += take
                state = remaining == take ? .done : .length(remaining - take)
                if remaining != take { return body }
            case .untilClose:
                body += buffer[index...]
                index = buffer.count
                return body
            case .chunkSize:
                guard let end = Self.find([13, 10], in: buffer, from: index) else {
                    if buffer.count - index > 1024 { throw ProtocolError(description: "a chunk size line is too long") }
                    return body
                }
                let line = String(decoding: buffer[index..<end], as: UTF8.self)
                let digits = line.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
                guard let size = Int(digits.trimmingSpaces, radix: 16), size >= 0 else {
                    throw ProtocolError(description: "a bad chunk size \"\(line.prefix(40))\"")
                }
                index = end + 2
                state = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let remaining):
                let take = min(remaining, buffer.count - index)
                body += buffer[index..<index + take]
                index += take
                if remaining != take {
                    state = .chunkData(remaining - take)
                    return body
                }
                state = .chunkEnd
            case .chunkEnd:
                guard buffer.count - index >= 2 else { return body }
                guard buffer[index] == 13 && buffer[index + 1] == 10 else {
                    throw ProtocolError(description: "a chunk does not end in CRLF")
                }
                index += 2
                state = .chunkSize
            case .trailers:
                guard let end = Self.find([13, 10], in: buffer, from: index) else { return body }
                if end == index { state = .done }  // an empty line ends the trailers
                index = end + 2
            case .done:
                return body
            }
        }
    }

    private mutating func parseHead(_ head: ArraySlice<UInt8>) throws(ProtocolError) {
        let lines = String(decoding: head, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.first ?? ""
        let words = statusLine.split(separator: " ", maxSplits: 2)
        guard words.count >= 2, words[0].hasPrefix("HTTP/1."), let code = Int(words[1]) else {
            throw ProtocolError(description: "not an HTTP answer: \"\(statusLine.prefix(60))\"")
        }
        status = code
        var length: Int?
        var chunked = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...]).trimmingSpaces.lowercased()
            switch name {
            case "content-length":
                guard let number = Int(value), number >= 0 else {
                    throw ProtocolError(description: "a bad Content-Length \"\(value)\"")
                }
                length = number
            case "transfer-encoding":
                chunked = value.hasSuffix("chunked")
            case "connection":
                closeAfter = value == "close"
            default:
                break
            }
        }
        if chunked {
            state = .chunkSize
        } else if let length {
            state = length == 0 ? .done : .length(length)
        } else {
            closeAfter = true
            state = .untilClose
        }
    }

    static func find(_ pattern: [UInt8], in buffer: [UInt8], from start: Int) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        var index = start
        while index + pattern.count <= buffer.count {
            if buffer[index] == pattern[0] && buffer[index..<index + pattern.count].elementsEqual(pattern) {
                return index
            }
            index += 1
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
