/// The last `capacity` bytes written to a stream, and how many were written in all — plus the
/// beginning of the last line that says something, so that a last line longer than the
/// capacity (an error message followed by a long list of paths, say) keeps its first words.
public struct OutputTail: Sendable {
    public static let defaultCapacity = 4096
    /// How much of the last non-blank line's beginning is kept.
    public static let lineHeadCapacity = 256

    public let capacity: Int
    public private(set) var totalBytes = 0
    /// Holds up to twice the capacity, so that trimming is amortised over many appends.
    private var buffer: [UInt8] = []
    /// The last line that holds more than whitespace: the first bytes from its first
    /// non-blank one, and where they start (a count of the bytes written before them).
    private var lastLineStart = 0
    private var lastLineHead: [UInt8] = []
    /// The line being written holds more than whitespace (it is that last line, still growing).
    private var currentLineHasText = false

    public init(capacity: Int = OutputTail.defaultCapacity) {
        self.capacity = capacity
    }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        let chunk = Array(bytes)
        trackLastLine(chunk)
        totalBytes += chunk.count
        buffer.append(contentsOf: chunk.suffix(capacity))
        if buffer.count > 2 * capacity {
            buffer.removeFirst(buffer.count - capacity)
        }
    }

    /// The kept bytes, oldest first.
    public var bytes: [UInt8] { Array(buffer.suffix(capacity)) }

    /// The kept bytes as text (invalid UTF-8 repaired), starting at a line boundary when the
    /// beginning was cut off — unless that would leave nothing but blanks: then the last line
    /// that says something is shown, its beginning and its end (`head … end`), never nothing.
    public var text: String {
        var kept = bytes
        guard totalBytes > kept.count else { return String(decoding: kept, as: UTF8.self) }
        let windowStart = totalBytes - kept.count
        if let newline = kept.firstIndex(of: 0x0A), !kept[(newline + 1)...].allSatisfy(Self.isBlank) {
            kept.removeSubrange(...newline)
            return String(decoding: kept, as: UTF8.self)
        }
        // Only the cut last line is in the window: put its beginning back.
        guard lastLineStart < windowStart, !lastLineHead.isEmpty else { return String(decoding: kept, as: UTF8.self) }
        let headEnd = lastLineStart + lastLineHead.count
        if headEnd >= windowStart {
            return String(decoding: lastLineHead + kept[(headEnd - windowStart)...], as: UTF8.self)
        }
        return String(decoding: lastLineHead + Array(" … ".utf8) + kept, as: UTF8.self)
    }

    public var truncated: Bool { totalBytes > capacity }

    /// Keeps the beginning of the last line that says something (only it can matter).
    private mutating func trackLastLine(_ chunk: [UInt8]) {
        guard let lastText = chunk.lastIndex(where: { !Self.isBlank($0) }) else {
            if currentLineHasText { extendHead(chunk[..<(chunk.firstIndex(of: 0x0A) ?? chunk.endIndex)]) }
            if chunk.contains(0x0A) { currentLineHasText = false }
            return
        }
        let lineEnd = chunk[lastText...].firstIndex(of: 0x0A) ?? chunk.endIndex
        if let newline = chunk[..<lastText].lastIndex(of: 0x0A) {
            // The line began in this chunk.
            let first = chunk[(newline + 1)...].firstIndex { !Self.isBlank($0) }!
            startHead(at: totalBytes + first, chunk[first..<lineEnd])
        } else if currentLineHasText {
            extendHead(chunk[..<lineEnd])
        } else {
            let first = chunk.firstIndex { !Self.isBlank($0) }!
            startHead(at: totalBytes + first, chunk[first..<lineEnd])
        }
        currentLineHasText = lineEnd == chunk.endIndex
    }

    private mutating func startHead(at start: Int, _ bytes: ArraySlice<UInt8>) {
        lastLineStart = start
        lastLineHead = Array(bytes.prefix(Self.lineHeadCapacity))
    }

    private mutating func extendHead(_ bytes: ArraySlice<UInt8>) {
        guard lastLineHead.count < Self.lineHeadCapacity else { return }
        lastLineHead += bytes.prefix(Self.lineHeadCapacity - lastLineHead.count)
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}
