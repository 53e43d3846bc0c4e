/// The last `capacity` bytes written to a stream, and how many were written in all.
public struct OutputTail: Sendable {
    public static let defaultCapacity = 4096

    public let capacity: Int
    public private(set) var totalBytes = 0
    private var buffer: [UInt8] = []
    private var start = 0  // index of the oldest byte once the buffer is full

    public init(capacity: Int = OutputTail.defaultCapacity) {
        self.capacity = capacity
    }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        totalBytes += bytes.count
        for byte in bytes.suffix(capacity) {
            if buffer.count < capacity {
                buffer.append(byte)
            } else {
                buffer[start] = byte
                start = (start + 1) % capacity
            }
        }
    }

    /// The kept bytes, oldest first.
    public var bytes: [UInt8] { Array(buffer[start...] + buffer[..<start]) }

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
