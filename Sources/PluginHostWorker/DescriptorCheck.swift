import PluginABI
import PluginHostWire

/// Checks a plugin's descriptor against the ABI before anything in it is used, most
/// fundamental first, naming both values on a mismatch (README, "Integrity before load").
enum DescriptorCheck {
    /// Larger descriptors are implausible: refuse them rather than read that far.
    static let maximumSize = 65536

    static func validate(_ raw: UnsafeRawPointer) -> Result<(ph_plugin, PluginIdentity), PluginRefusal> {
        let magic = raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
        guard magic == PH_PLUGIN_MAGIC else {
            return .failure(
                PluginRefusal(
                    .magic,
                    "descriptor magic is \(hex(magic)), expected \(hex(PH_PLUGIN_MAGIC)): not a pluginhost plugin"))
        }
        let major = raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        let minor = raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        guard major == UInt16(PH_ABI_MAJOR) else {
            return .failure(
                PluginRefusal(
                    .abiMajor,
                    "the plugin speaks ABI \(major).\(minor), this host speaks \(PH_ABI_MAJOR).\(PH_ABI_MINOR)"))
        }
        let size = Int(raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let minimum = MemoryLayout<ph_plugin>.size  // ABI 1.0's size, PH_PLUGIN_MIN_SIZE
        guard size >= minimum else {
            return .failure(
                PluginRefusal(
                    .structSize, "the descriptor is \(size) bytes, ABI \(PH_ABI_MAJOR) needs at least \(minimum)"))
        }
        guard size <= maximumSize else {
            return .failure(PluginRefusal(.structSize, "the descriptor claims \(size) bytes, more than \(maximumSize)"))
        }
        // A newer minor version may add fields at the end; this host can only accept them unset.
        if size > minimum,
            let offset = (minimum..<size).first(where: { raw.load(fromByteOffset: $0, as: UInt8.self) != 0 })
        {
            return .failure(
                PluginRefusal(
                    .trailingFields,
                    """
                    the plugin (ABI \(major).\(minor)) sets byte \(offset) of its descriptor, beyond the \(minimum) \
                    bytes this host (ABI \(PH_ABI_MAJOR).\(PH_ABI_MINOR)) knows
                    """
                ))
        }
        let descriptor = raw.loadUnaligned(as: ph_plugin.self)
        guard descriptor.flags == 0 else {
            return .failure(
                PluginRefusal(
                    .flags,
                    "the descriptor sets flags \(hex(descriptor.flags)), none are defined in ABI \(PH_ABI_MAJOR).\(PH_ABI_MINOR)"
                ))
        }
        let reserved = withUnsafeBytes(of: descriptor.reserved) { Array($0.bindMemory(to: UInt.self)) }
        if let slot = reserved.firstIndex(where: { $0 != 0 }) {
            return .failure(PluginRefusal(.reserved, "reserved slot \(slot) is set; it must be NULL"))
        }
        let required: [(String, Bool)] = [
            ("create", descriptor.create != nil), ("check", descriptor.check != nil),
            ("quiesce", descriptor.quiesce != nil),
            ("resume", descriptor.resume != nil), ("destroy", descriptor.destroy != nil),
        ]
        if let missing = required.first(where: { !$0.1 }) {
            return .failure(PluginRefusal(.function, "the descriptor has no \(missing.0) function"))
        }
        guard let namePointer = descriptor.name, let versionPointer = descriptor.version else {
            return .failure(
                PluginRefusal(.identity, "the descriptor has no \(descriptor.name == nil ? "name" : "version")"))
        }
        let name = String(cString: namePointer)
        guard PluginIdentity.isValidName(name) else {
            return .failure(
                PluginRefusal(
                    .identity, "the plugin's name \"\(name.prefix(80))\" is not letters, digits, '.', '_' and '-'"))
        }
        let identity = PluginIdentity(
            name: name, version: String(String(cString: versionPointer).prefix(64)),
            description: descriptor.description.map { String(String(cString: $0).prefix(200)) } ?? "",
            abi: "\(major).\(minor)")
        return .success((descriptor, identity))
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
