import PluginHostSupport

/// Rows of cells rendered with every column padded to its widest cell (the last one unpadded).
struct TextTable {
    var rows: [[String]]

    func render() -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }
            .joined(separator: "  ")
            .trimmingTrailingSpaces() + "\n"
        }
        .joined()
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}

/// 12.345 → "12.3", 60.0 → "60".
func formatNumber(_ value: Double, decimals: Int = 1) -> String { NumberText.decimal(value, decimals: decimals) }

func formatMs(_ value: Double?) -> String {
    guard let value else { return "-" }
    return NumberText.milliseconds(value)
}
