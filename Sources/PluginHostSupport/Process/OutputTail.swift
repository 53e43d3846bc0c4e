/// The last `capacity` bytes written to a stream, and how many were written in all.
public struct OutputTail: Sendable {
    public static let defaultCapacity = 4096

    public let capacity: Int
    public private(set) var totalBytes = 0
    /// Holds up to twice the capacity, so that trimming is amortised over many appends.
    private var buffer: [UInt8] = []

    public init(capacity: Int = OutputTail.defaultCapacity) {
        self.capacity = capacity
    }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        totalBytes += bytes.count
        buffer.append(contentsOf: bytes.suffix(capacity))
        if buffer.count > 2 * capacity {
            buffer.removeFirst(buffer.count - capacity)
        }
    }

    /// The kept bytes, oldest first.
    public var bytes: [UInt8] { Array(buffer.suffix(capacity)) }

    /// The kept bytes as text (invalid UTF-8 repaired), starting at a line boundary when the
    /// beginning was cut off.
    public var text: String {
        var kept = bytes
        if totalBytes > capacity, let newline = kept.firstIndex(of: 0x0A) {
            kept.removeSubrange(...newline)
        }
        return String(decoding: kept, as: UTF8.self)
    }

    public var truncated: Bool { totalBytes > capacity }
}
