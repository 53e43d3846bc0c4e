import PluginHostSupport
import Testing

@Suite("Numbers for people")
struct NumberTextTests {
    @Test func decimals() {
        let table: [(Double, Int, String)] = [
            (12.345, 1, "12.3"), (60, 1, "60"), (0.05, 1, "0.1"), (2.5, 3, "2.5"), (0.125, 3, "0.125"),
            (1.0049, 2, "1"), (-3.14159, 2, "-3.14"), (1e20, 1, "1e+20"), (.infinity, 1, "inf"),
        ]
        for (value, decimals, expected) in table {
            #expect(NumberText.decimal(value, decimals: decimals) == expected, "\(value) with \(decimals)")
        }
    }

    @Test func fixed() {
        let table: [(Double, Int, String)] = [
            (1.5, 3, "1.500"), (0.0004, 3, "0.000"), (0.0005, 3, "0.001"), (123.4567, 3, "123.457"), (-0.25, 1, "-0.3"),
            (7, 0, "7"), (-0.0001, 2, "0.00"),
        ]
        for (value, decimals, expected) in table {
            #expect(NumberText.fixed(value, decimals: decimals) == expected, "\(value) with \(decimals)")
        }
    }

    @Test func durations() {
        #expect(NumberText.milliseconds(3.256) == "3.26 ms")
        #expect(NumberText.milliseconds(12.34) == "12.3 ms")
        #expect(NumberText.milliseconds(2500) == "2500 ms")
        #expect(NumberText.duration(milliseconds: 2500) == "2.5 s")
        #expect(NumberText.duration(milliseconds: 999.9) == "999.9 ms")
    }
}
