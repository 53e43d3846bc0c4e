/// A device number as mountinfo writes it, "major:minor" (glibc's major()/minor(), which Swift
/// cannot import because they are macros).
public func deviceName(_ device: UInt) -> String {
    let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
    let minor = (device & 0xff) | ((device >> 12) & ~0xff)
    return "\(major):\(minor)"
}
