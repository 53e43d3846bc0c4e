import Glibc
import PluginHostSupport
import PluginHostWire

/// A key and value as etcd returns them.
struct EtcdKeyValue: Sendable, Equatable {
    var key: String
    var value: [UInt8]
    var createRevision: Int64
    var modRevision: Int64
    var lease: Int64

    init?(json: JSONValue) {
        guard case .string(let key64)? = json["key"], let key = Base64.decode(key64) else { return nil }
        self.key = String(decoding: key, as: UTF8.self)
        if case .string(let value64)? = json["value"] {
            guard let decoded = Base64.decode(value64) else { return nil }
            value = decoded
        } else {
            value = []
        }
        createRevision = EtcdClient.integer(json["create_revision"]) ?? 0
        modRevision = EtcdClient.integer(json["mod_revision"]) ?? 0
        lease = EtcdClient.integer(json["lease"]) ?? 0
    }

    var text: String { String(decoding: value, as: UTF8.self) }
}

/// One operation inside a transaction.
enum EtcdOperation {
    case put(key: String, value: String, lease: Int64)
    /// The keys from `key` up to `end` (nil: `key` alone).
    case range(key: String, end: String?, countOnly: Bool)
    case deleteRange(key: String, end: String?)

    var json: JSONValue {
        switch self {
        case .put(let key, let value, let lease):
            var fields: [(key: String, value: JSONValue)] = [
                ("key", .string(Base64.encode(key))), ("value", .string(Base64.encode(value))),
            ]
            if lease != 0 { fields.append(("lease", .string(String(lease)))) }
            return .object([("request_put", .object(fields))])
        case .range(let key, let end, let countOnly):
            var fields: [(key: String, value: JSONValue)] = [("key", .string(Base64.encode(key)))]
            if let end { fields.append(("range_end", .string(Base64.encode(end)))) }
            if countOnly { fields.append(("count_only", .bool(true))) }
            return .object([("request_range", .object(fields))])
        case .deleteRange(let key, let end):
            var fields: [(key: String, value: JSONValue)] = [("key", .string(Base64.encode(key)))]
            if let end { fields.append(("range_end", .string(Base64.encode(end)))) }
            return .object([("request_delete_range", .object(fields))])
        }
    }
}

/// A comparison of a transaction: `createRevision(key) == revision` (0: the key does not exist).
struct EtcdCompare {
    var key: String
    var createRevision: Int64

    var json: JSONValue {
        .object([
            ("target", .string("CREATE")), ("key", .string(Base64.encode(key))), ("result", .string("EQUAL")),
            ("create_revision", .string(String(createRevision))),
        ])
    }
}

/// What a transaction answered: whether the comparisons held, the revision, and each
/// operation's answer in order (for a range: its keys and count).
struct EtcdTxnResult {
    var succeeded: Bool
    var revision: Int64
    var ranges: [(kvs: [EtcdKeyValue], count: Int64)]
}

/// etcd's v3 API through its JSON gateway (`/v3/kv/…`, `/v3/lease/…`, `/v3/watch`), over one
/// kept-alive HTTP/1.1 connection, failing over to the next endpoint when one does not answer.
/// Everything is synchronous with a deadline: the group process has one thread.
final class EtcdClient {
    let endpoints: [EtcdEndpoint]
    let tls: TLSFiles?
    /// How long one request may take on one endpoint.
    let requestTimeout: Duration
    private var current = 0
    private var connection: HTTPConnection?
    /// Round trips made, and their total time (for the report: the client's cost per barrier).
    private(set) var requests = 0
    private(set) var requestTime: Duration = .zero

    init(endpoints: [EtcdEndpoint], tls: TLSFiles?, requestTimeout: Duration) {
        self.endpoints = endpoints
        self.tls = tls
        self.requestTimeout = requestTimeout
    }

    /// The endpoint in use (for messages).
    var endpoint: EtcdEndpoint { endpoints[current] }

    /// POSTs to `path`; on no answer, tries the other endpoints in turn (each once), within `limit`.
    func call(_ path: String, _ body: JSONValue, limit: Monotonic.Instant? = nil) throws(EtcdError) -> JSONValue {
        let text = body.serialized()
        var failures: [String] = []
        let begin = Monotonic.Instant.now
        defer {
            requests += 1
            requestTime += Monotonic.Instant.now - begin
        }
        for attempt in 0..<endpoints.count {
            let deadline = min(Monotonic.Instant.now + requestTimeout, limit ?? .max)
            do throws(EtcdError) {
                if connection == nil {
                    connection = try HTTPConnection(endpoint: endpoints[current], tls: tls, deadline: deadline)
                }
                let (status, answer) = try connection!.post(path, body: text, deadline: deadline)
                let value = try Self.parse(answer, from: endpoints[current])
                if status == 200 { return value }
                let message = Self.errorMessage(value) ?? "HTTP status \(status)"
                // Unavailable (no leader, shutting down): another endpoint may answer.
                if status == 503 || Self.integer(value["code"]) == 14 {
                    throw EtcdError.connection("\(endpoints[current]): \(message)")
                }
                throw EtcdError.server("\(endpoints[current]): \(message)")
            } catch let error where error.kind == .connection {
                failures.append(error.message)
                connection?.close()
                connection = nil
                current = (current + 1) % endpoints.count
                if let limit, Monotonic.Instant.now >= limit { break }
                _ = attempt
            }
        }
        throw .connection(failures.joined(separator: "; "))
    }

    static func parse(_ bytes: [UInt8], from endpoint: EtcdEndpoint) throws(EtcdError) -> JSONValue {
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw .connection(
                "\(endpoint) answered something that is not JSON (\(error)): \(String(decoding: bytes.prefix(120), as: UTF8.self))"
            )
        }
    }

    static func errorMessage(_ value: JSONValue) -> String? {
        if case .string(let message)? = value["message"] { return message }
        if case .string(let message)? = value["error"] { return message }
        if let error = value["error"], case .string(let message)? = error["message"] { return message }
        return nil
    }

    /// etcd's 64-bit integers arrive as JSON strings (and absent when zero).
    static func integer(_ value: JSONValue?) -> Int64? {
        switch value {
        case .string(let text)?: Int64(text)
        case .number(let number)?: number.integerValue.map(Int64.init)
        default: nil
        }
    }

    // MARK: - The calls

    /// A lease of `ttl` seconds; returns its id and the TTL etcd granted (it may raise it).
    func grantLease(ttl: Int) throws(EtcdError) -> (id: Int64, ttl: Int) {
        let answer = try call("/v3/lease/grant", .object([("TTL", .string(String(ttl)))]))
        guard let id = Self.integer(answer["ID"]), id != 0 else {
            throw .server("\(endpoint): lease grant answered no lease id")
        }
        return (id, Int(Self.integer(answer["TTL"]) ?? Int64(ttl)))
    }

    /// One keep-alive; returns the lease's remaining TTL (0: the lease is gone).
    func keepAlive(_ lease: Int64, limit: Monotonic.Instant? = nil) throws(EtcdError) -> Int64 {
        let answer = try call("/v3/lease/keepalive", .object([("ID", .string(String(lease)))]), limit: limit)
        return Self.integer(answer["result"]?["TTL"]) ?? 0
    }

    /// Revokes a lease (deleting every key attached to it); a lease already gone is fine.
    func revoke(_ lease: Int64, limit: Monotonic.Instant? = nil) throws(EtcdError) {
        do {
            _ = try call("/v3/lease/revoke", .object([("ID", .string(String(lease)))]), limit: limit)
        } catch let error where error.kind == .server && error.message.contains("lease not found") {
            return
        }
    }

    func range(_ key: String, end: String? = nil, limit: Monotonic.Instant? = nil) throws(EtcdError) -> (
        kvs: [EtcdKeyValue], revision: Int64
    ) {
        var fields: [(key: String, value: JSONValue)] = [("key", .string(Base64.encode(key)))]
        if let end { fields.append(("range_end", .string(Base64.encode(end)))) }
        let answer = try call("/v3/kv/range", .object(fields), limit: limit)
        return (try Self.keyValues(answer["kvs"]), Self.integer(answer["header"]?["revision"]) ?? 0)
    }

    func put(_ key: String, _ value: String, lease: Int64) throws(EtcdError) -> Int64 {
        let result = try txn([], success: [.put(key: key, value: value, lease: lease)], failure: [])
        return result.revision
    }

    func txn(
        _ compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation], limit: Monotonic.Instant? = nil
    )
        throws(EtcdError) -> EtcdTxnResult
    {
        var body: [(key: String, value: JSONValue)] = []
        if !compare.isEmpty { body.append(("compare", .array(compare.map(\.json)))) }
        if !success.isEmpty { body.append(("success", .array(success.map(\.json)))) }
        if !failure.isEmpty { body.append(("failure", .array(failure.map(\.json)))) }
        let answer = try call("/v3/kv/txn", .object(body), limit: limit)
        var succeeded = false
        if case .bool(let flag)? = answer["succeeded"] { succeeded = flag }
        var ranges: [(kvs: [EtcdKeyValue], count: Int64)] = []
        if case .array(let responses)? = answer["responses"] {
            for response in responses {
                if let range = response["response_range"] {
                    ranges.append((try Self.keyValues(range["kvs"]), Self.integer(range["count"]) ?? 0))
                }
            }
        }
        return EtcdTxnResult(
            succeeded: succeeded, revision: Self.integer(answer["header"]?["revision"]) ?? 0, ranges: ranges)
    }

    static func keyValues(_ value: JSONValue?) throws(EtcdError) -> [EtcdKeyValue] {
        guard let value else { return [] }
        guard case .array(let items) = value else { throw .server("etcd answered kvs that are not an array") }
        var result: [EtcdKeyValue] = []
        for item in items {
            guard let kv = EtcdKeyValue(json: item) else {
                throw .server("etcd answered a key-value that does not decode")
            }
            result.append(kv)
        }
        return result
    }

    /// The end of the range of keys starting with `prefix` (etcd's "prefix" end: the last byte plus one).
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0x7F {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }
}

/// One watch stream on a key range: `/v3/watch`, an answer that never ends, one JSON object per
/// line. Its descriptor goes into the group process's poll(2).
final class EtcdWatch {
    struct Event {
        var deleted: Bool
        var kv: EtcdKeyValue
    }

    let connection: HTTPConnection
    private var reader = ResponseReader()
    private var pending: [UInt8] = []
    private(set) var created = false
    /// Events that came with the answer that created the watch.
    private(set) var early: [Event] = []
    /// The last revision seen (to resume on another endpoint after this one).
    private(set) var revision: Int64

    /// Watches [`key`, `end`) from `startRevision` on, over a connection of its own.
    init(
        endpoint: EtcdEndpoint, tls: TLSFiles?, key: String, end: String, startRevision: Int64,
        deadline: Monotonic.Instant
    )
        throws(EtcdError)
    {
        connection = try HTTPConnection(endpoint: endpoint, tls: tls, deadline: deadline)
        revision = startRevision - 1
        let request = JSONValue.object([
            (
                "create_request",
                .object([
                    ("key", .string(Base64.encode(key))), ("range_end", .string(Base64.encode(end))),
                    ("start_revision", .string(String(startRevision))),
                ])
            )
        ])
        try connection.sendRequest("/v3/watch", body: request.serialized(), deadline: deadline)
        // Wait for "created" so that a watch that cannot be made is known now.
        while !created {
            guard try connection.fill(until: deadline) else {
                throw .connection("\(endpoint) closed the watch before creating it")
            }
            early += try events()
        }
    }

    var descriptor: Int32 { connection.descriptor }

    /// Reads what is there (without waiting) and returns the events it holds; throws when the
    /// stream ended or broke (the caller resumes it elsewhere or gives up).
    func receive() throws(EtcdError) -> [Event] {
        let first = early
        early = []
        guard try connection.fillAvailable() else { throw .connection("\(connection.endpoint) ended the watch") }
        return first + (try events())
    }

    /// Events are buffered that poll(2) would not report.
    var hasBufferedEvents: Bool { !early.isEmpty || connection.hasBufferedInput }

    private func events() throws(EtcdError) -> [Event] {
        pending += try connection.consume(with: &reader)
        if reader.complete { throw .connection("\(connection.endpoint) ended the watch (HTTP \(reader.status))") }
        var result: [Event] = []
        while let newline = pending.firstIndex(of: 10) {
            let line = Array(pending[..<newline])
            pending.removeFirst(newline + 1)
            if line.allSatisfy({ $0 == 32 || $0 == 13 }) { continue }
            let value = try EtcdClient.parse(line, from: connection.endpoint)
            if let message = EtcdClient.errorMessage(value) {
                throw .server("\(connection.endpoint): the watch failed: \(message)")
            }
            guard let answer = value["result"] else {
                throw .server("\(connection.endpoint): a watch answer without a result")
            }
            if case .bool(true)? = answer["created"] { created = true }
            if case .bool(true)? = answer["canceled"] {
                let reason = { if case .string(let text)? = answer["cancel_reason"] { text } else { "" } }()
                throw .server("\(connection.endpoint): the watch was cancelled \(reason)")
            }
            guard case .array(let items)? = answer["events"] else { continue }
            for item in items {
                guard let kvJSON = item["kv"], let kv = EtcdKeyValue(json: kvJSON) else {
                    throw .server("a watch event that does not decode")
                }
                var deleted = false
                if case .string("DELETE")? = item["type"] { deleted = true }
                result.append(Event(deleted: deleted, kv: kv))
                revision = max(revision, kv.modRevision)
            }
        }
        return result
    }
}
