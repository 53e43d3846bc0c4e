import Glibc
import PluginABI
import PluginHostSupport

/// What the host offers the plugin (`ph_host`).
public struct PluginHostServices: @unchecked Sendable {
    private let raw: UnsafePointer<ph_host>?
    public let operationID: String
    public let freezeMounts: [String]

    init(_ raw: UnsafePointer<ph_host>?) {
        self.raw = raw
        operationID = raw?.pointee.operation_id.map { String(cString: $0) } ?? ""
        var mounts: [String] = []
        if var cursor = raw?.pointee.freeze_mounts {
            while let mount = cursor.pointee {
                mounts.append(String(cString: mount))
                cursor += 1
            }
        }
        freezeMounts = mounts
    }

    /// A host without services, for tests of a plugin's logic.
    public init(operationID: String = "test", freezeMounts: [String] = []) {
        raw = nil
        self.operationID = operationID
        self.freezeMounts = freezeMounts
    }

    /// One line to the host's log.
    public func log(_ level: PluginLogLevel, _ message: String) {
        guard let raw, let log = raw.pointee.log else { return }
        log(raw.pointee.context, level.rawValue, message)
    }
}

/// Builds the C descriptor for a Swift plugin type. One plugin per library.
public enum PluginExport {
    nonisolated(unsafe) private static var pluginType: (any QuiescePlugin.Type)?
    nonisolated(unsafe) private static var exported: UnsafeMutablePointer<ph_plugin>?

    /// The descriptor `pluginhost_plugin_entry` returns; built once, valid while loaded.
    public static func descriptor(for type: any QuiescePlugin.Type) -> UnsafeRawPointer {
        if let exported { return UnsafeRawPointer(exported) }
        pluginType = type
        let descriptor = UnsafeMutablePointer<ph_plugin>.allocate(capacity: 1)
        descriptor.initialize(to: ph_plugin())
        descriptor.pointee.magic = PH_PLUGIN_MAGIC
        descriptor.pointee.abi_major = UInt16(PH_ABI_MAJOR)
        descriptor.pointee.abi_minor = UInt16(PH_ABI_MINOR)
        descriptor.pointee.struct_size = UInt32(MemoryLayout<ph_plugin>.size)
        descriptor.pointee.name = UnsafePointer(strdup(type.name))
        descriptor.pointee.version = UnsafePointer(strdup(type.version))
        descriptor.pointee.description = UnsafePointer(strdup(type.summary))
        descriptor.pointee.create = createEntry
        descriptor.pointee.check = checkEntry
        descriptor.pointee.quiesce = quiesceEntry
        descriptor.pointee.resume = resumeEntry
        descriptor.pointee.destroy = destroyEntry
        descriptor.pointee.data_paths = dataPathsEntry
        exported = descriptor
        return UnsafeRawPointer(descriptor)
    }

    fileprivate static func create(
        _ configText: UnsafePointer<CChar>?, _ host: UnsafePointer<ph_host>?,
        _ instance: UnsafeMutablePointer<OpaquePointer?>?, _ call: UnsafeMutablePointer<ph_call>?
    ) -> Int32 {
        guard let pluginType, let instance else { return PluginStatus.failed.rawValue }
        let text = configText.map { String(cString: $0) } ?? "{}"
        let config: JSONValue
        do {
            config = try JSONParser.parse(text)
        } catch {
            return finish(
                call, PluginCall(deadline: nil), PluginError(.invalidConfig, "the config is not valid JSON: \(error)"))
        }
        do {
            let plugin = try pluginType.init(config: config, host: PluginHostServices(host))
            instance.pointee = OpaquePointer(Unmanaged.passRetained(Box(plugin)).toOpaque())
            return finish(call, PluginCall(deadline: nil), nil)
        } catch {
            return finish(call, PluginCall(deadline: nil), error)
        }
    }

    fileprivate static func invoke(
        _ instance: OpaquePointer?, _ call: UnsafeMutablePointer<ph_call>?,
        _ body: (any QuiescePlugin, inout PluginCall) throws(PluginError) -> Void
    ) -> Int32 {
        guard let instance else { return PluginStatus.failed.rawValue }
        let plugin = Unmanaged<Box>.fromOpaque(UnsafeRawPointer(instance)).takeUnretainedValue().plugin
        var swiftCall = PluginCall(
            deadline: instant(abi: call?.pointee.deadline_ns), holdUntil: instant(abi: call?.pointee.hold_until_ns))
        do {
            try body(plugin, &swiftCall)
            return finish(call, swiftCall, nil)
        } catch {
            return finish(call, swiftCall, error)
        }
    }

    /// A deadline of the ABI (`deadline_ns`, `hold_until_ns`: CLOCK_MONOTONIC nanoseconds, 0 for
    /// none) as an instant: the one place a plugin sees raw time.
    static func instant(abi abiNanoseconds: UInt64?) -> Monotonic.Instant? {
        abiNanoseconds.flatMap { $0 > 0 ? Monotonic.Instant(nanoseconds: $0) : nil }
    }

    fileprivate static func destroy(_ instance: OpaquePointer?) {
        guard let instance else { return }
        Unmanaged<Box>.fromOpaque(UnsafeRawPointer(instance)).release()
    }

    /// Writes the message and details into the host's buffers and returns the status.
    private static func finish(_ call: UnsafeMutablePointer<ph_call>?, _ result: PluginCall, _ error: PluginError?)
        -> Int32
    {
        if let call {
            copy(error?.message ?? result.summary ?? "", into: call.pointee.message, size: call.pointee.message_size)
            let details = result.details.map { "\($0.key)=\($0.value.replacing(newlines: " "))\n" }.joined()
            copy(details, into: call.pointee.details, size: call.pointee.details_size)
        }
        return error?.status.rawValue ?? PluginStatus.ok.rawValue
    }

    /// Copies NUL-terminated text, cut at a UTF-8 character boundary to fit.
    private static func copy(_ text: String, into buffer: UnsafeMutablePointer<CChar>?, size: Int) {
        guard let buffer, size > 0 else { return }
        var bytes = Array(text.utf8)
        if bytes.count > size - 1 {
            bytes.removeLast(bytes.count - (size - 1))
            while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
            if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
        }
        bytes.withUnsafeBufferPointer { source in
            source.withMemoryRebound(to: CChar.self) { buffer.update(from: $0.baseAddress!, count: $0.count) }
        }
        buffer[bytes.count] = 0
    }
}

private final class Box {
    let plugin: any QuiescePlugin
    init(_ plugin: any QuiescePlugin) { self.plugin = plugin }
}

extension String {
    fileprivate func replacing(newlines replacement: String) -> String {
        split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).joined(separator: replacement)
    }
}

// The C entry points: plain functions, no captures, as the ABI requires.
private let createEntry:
    @convention(c) (
        UnsafePointer<CChar>?, UnsafePointer<ph_host>?, UnsafeMutablePointer<OpaquePointer?>?,
        UnsafeMutablePointer<ph_call>?
    ) -> Int32 = { PluginExport.create($0, $1, $2, $3) }
private let checkEntry: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ph_call>?) -> Int32 = {
    PluginExport.invoke($0, $1) { (plugin, call) throws(PluginError) in try plugin.check(&call) }
}
private let quiesceEntry: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ph_call>?) -> Int32 = {
    PluginExport.invoke($0, $1) { (plugin, call) throws(PluginError) in try plugin.quiesce(&call) }
}
private let resumeEntry: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ph_call>?) -> Int32 = {
    PluginExport.invoke($0, $1) { (plugin, call) throws(PluginError) in try plugin.resume(&call) }
}
private let dataPathsEntry: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ph_call>?) -> Int32 = {
    PluginExport.invoke($0, $1) { (plugin, call) throws(PluginError) in
        call.summary = try plugin.dataPaths(&call).joined(separator: "\n")
    }
}
private let destroyEntry: @convention(c) (OpaquePointer?) -> Void = { PluginExport.destroy($0) }
