import CFFICall
import Glibc
import PluginABI
import PluginHostSupport
import PluginHostWire

/// The worker: a fork of the host (or, when the host has more than one thread, the binary
/// started as `pluginhost __worker`) with the verified library on descriptor 3 — a sealed memfd
/// holding the bytes the host hashed — and a socket on descriptor 4. It loads the library with
/// dlopen through /proc/self/fd/3, checks its descriptor against the ABI,
/// most fundamental first, and serves the host's calls until told to destroy.
public enum PluginWorkerProcess {
    public static let libraryDescriptor: Int32 = 3
    public static let socketDescriptor: Int32 = 4

    public static func run() -> Int32 {
        _ = signal(SIGPIPE, SIG_IGN)
        var state = WorkerState()
        var buffer = [UInt8](repeating: 0, count: WorkerWire.maximumMessage)
        while true {
            let count = recv(socketDescriptor, &buffer, buffer.count, 0)
            if count < 0 && errno == EINTR { continue }
            guard count > 0, let request = WorkerWire.decodeRequest(buffer[0..<count]) else {
                state.destroy()
                return count == 0 ? 0 : 1  // the host went away, or spoke nonsense
            }
            let reply: WorkerMessage
            switch request {
            case .load(let kind, let spec):
                reply = state.load(kind: kind, ffiSpec: spec)
            case .create(let config, let operationID, let mounts, let deadline):
                reply = state.create(config: config, operationID: operationID, freezeMounts: mounts, deadline: deadline)
            case .call(let function, let deadline, let holdUntil):
                reply = state.call(function, deadline: deadline, holdUntil: holdUntil)
            case .destroy:
                state.destroy()
                send(.result(status: 0, message: "", details: ""))
                return 0
            }
            send(reply)
        }
    }

    static func send(_ message: WorkerMessage) {
        let bytes = WorkerWire.encode(message)
        _ = bytes.withUnsafeBytes { Glibc.send(socketDescriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

/// The ABI's log callback: one line to the host, cut to a sane length.
private let logCallback: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void = {
    _, level, message in
    guard let message else { return }
    var text = String(cString: message)
    if text.utf8.count > WorkerWire.logLineSize {
        text = String(decoding: text.utf8.prefix(WorkerWire.logLineSize), as: UTF8.self)
    }
    PluginWorkerProcess.send(.log(level: level, message: text))
}

private let nowCallback: @convention(c) () -> UInt64 = { Monotonic.now() }

private struct WorkerState {
    var handle: UnsafeMutableRawPointer?
    var plugin: ph_plugin?
    var instance: OpaquePointer?
    var host: UnsafeMutablePointer<ph_host>?
    var binding: FFIBinding?
    var ffiSymbols: [String: UnsafeMutableRawPointer] = [:]
    var isFFI = false
    var operationID = ""

    mutating func load(kind: PluginKind, ffiSpec: String?) -> WorkerMessage {
        guard handle == nil else { return .refused(check: .load, message: "already loaded") }
        // Only a sealed copy is loaded: its bytes are the ones the host hashed and can no longer change.
        guard SealedFile.isSealed(PluginWorkerProcess.libraryDescriptor) else {
            return .refused(
                check: .load,
                message: "the library was not handed over as a sealed copy; nothing that could still change is loaded")
        }
        guard let opened = dlopen("/proc/self/fd/\(PluginWorkerProcess.libraryDescriptor)", RTLD_NOW | RTLD_LOCAL)
        else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            return .refused(check: .load, message: "not a loadable shared library: \(reason)")
        }
        handle = opened
        if kind == .ffi {
            isFFI = true
            guard let ffiSpec, let spec = try? JSONParser.parse(ffiSpec), let parsed = try? FFIBinding.parse(spec)
            else {
                return .refused(check: .manifest, message: "the ffi spec does not parse")
            }
            binding = parsed
            for symbol in [parsed.check, parsed.quiesce, parsed.resume].compactMap({ $0?.symbol }) {
                guard let address = dlsym(opened, symbol) else {
                    return .refused(check: .symbol, message: "the library exports no function \(symbol)")
                }
                ffiSymbols[symbol] = address
            }
            return .loaded(PluginIdentity(name: "", version: "", description: "libffi binding", abi: "ffi"))
        }
        guard let entry = dlsym(opened, PH_PLUGIN_ENTRY_SYMBOL) else {
            return .refused(check: .entry, message: "the library exports no function \(PH_PLUGIN_ENTRY_SYMBOL)")
        }
        typealias Entry = @convention(c) () -> UnsafeRawPointer?
        guard let raw = unsafeBitCast(entry, to: Entry.self)() else {
            return .refused(check: .entry, message: "\(PH_PLUGIN_ENTRY_SYMBOL) returned NULL")
        }
        switch DescriptorCheck.validate(raw) {
        case .success(let (descriptor, identity)):
            plugin = descriptor
            return .loaded(identity)
        case .failure(let refusal):
            return .refused(check: refusal.check, message: refusal.message)
        }
    }

    mutating func create(config: String, operationID: String, freezeMounts: [String], deadline: UInt64) -> WorkerMessage
    {
        self.operationID = operationID
        if isFFI { return .result(status: 0, message: "", details: "") }
        guard let plugin, let create = plugin.create else { return notLoaded }
        let services = UnsafeMutablePointer<ph_host>.allocate(capacity: 1)
        services.initialize(to: ph_host())
        services.pointee.struct_size = UInt32(MemoryLayout<ph_host>.size)
        services.pointee.abi_major = UInt16(PH_ABI_MAJOR)
        services.pointee.abi_minor = UInt16(PH_ABI_MINOR)
        services.pointee.log = logCallback
        services.pointee.now_ns = nowCallback
        services.pointee.operation_id = UnsafePointer(strdup(operationID))
        let mounts = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: freezeMounts.count + 1)
        for (index, mount) in freezeMounts.enumerated() { mounts[index] = UnsafePointer(strdup(mount)) }
        mounts[freezeMounts.count] = nil
        services.pointee.freeze_mounts = UnsafePointer(mounts)
        host = services  // lives until the worker exits
        return Self.invoke(deadline: deadline, holdUntil: 0) { call in
            config.withCString { create($0, services, &instance, call) }
        }
    }

    mutating func call(_ function: PluginFunction, deadline: UInt64, holdUntil: UInt64) -> WorkerMessage {
        if isFFI { return callFFI(function, deadline: deadline) }
        guard let plugin, let instance else { return notLoaded }
        let entry: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<ph_call>?) -> Int32)?
        switch function {
        case .check: entry = plugin.check
        case .quiesce: entry = plugin.quiesce
        case .resume: entry = plugin.resume
        case .dataPaths: entry = plugin.data_paths
        }
        guard let entry else { return .result(status: 0, message: "", details: "") }  // data_paths is optional
        return Self.invoke(deadline: deadline, holdUntil: holdUntil) { entry(instance, $0) }
    }

    mutating func destroy() {
        if let instance, let destroy = plugin?.destroy { destroy(instance) }
        instance = nil
    }

    private var notLoaded: WorkerMessage {
        .result(status: 1, message: "the plugin is not loaded or created", details: "")
    }

    /// Runs one ABI call with host-owned buffers and turns the result into a message.
    private static func invoke(deadline: UInt64, holdUntil: UInt64, _ body: (UnsafeMutablePointer<ph_call>) -> Int32)
        -> WorkerMessage
    {
        let message = UnsafeMutablePointer<CChar>.allocate(capacity: WorkerWire.messageSize)
        let details = UnsafeMutablePointer<CChar>.allocate(capacity: WorkerWire.detailsSize)
        defer {
            message.deallocate()
            details.deallocate()
        }
        message[0] = 0
        details[0] = 0
        var call = ph_call()
        call.struct_size = UInt32(MemoryLayout<ph_call>.size)
        call.deadline_ns = deadline
        call.hold_until_ns = holdUntil
        call.message = message
        call.message_size = WorkerWire.messageSize
        call.details = details
        call.details_size = WorkerWire.detailsSize
        let status = body(&call)
        // A plugin that ignored the size may have left no terminator: never read past the buffer.
        message[WorkerWire.messageSize - 1] = 0
        details[WorkerWire.detailsSize - 1] = 0
        return .result(status: status, message: String(cString: message), details: String(cString: details))
    }

    private func callFFI(_ function: PluginFunction, deadline: UInt64) -> WorkerMessage {
        guard let binding else { return notLoaded }
        let spec: FFIBinding.Function?
        switch function {
        case .check: spec = binding.check
        case .quiesce: spec = binding.quiesce
        case .resume: spec = binding.resume
        case .dataPaths: spec = nil
        }
        guard let spec else { return .result(status: 0, message: "", details: "") }
        guard let address = ffiSymbols[spec.symbol] else {
            return .result(status: 1, message: "symbol \(spec.symbol) was not resolved", details: "")
        }
        guard let value = spec.call(address, deadline: deadline, operationID: operationID) else {
            return .result(status: 1, message: "libffi could not prepare the call to \(spec.symbol)", details: "")
        }
        if spec.returns == .void || value == spec.success {
            return .result(status: 0, message: "", details: "return=\(value)\n")
        }
        return .result(
            status: 1, message: "\(spec.symbol) returned \(value) (success is \(spec.success))",
            details: "return=\(value)\n")
    }
}

extension FFIBinding.ValueType {
    /// The shim's code for the type.
    var code: Int32 {
        switch self {
        case .void: Int32(PH_FFI_VOID.rawValue)
        case .int32: Int32(PH_FFI_INT32.rawValue)
        case .int64: Int32(PH_FFI_INT64.rawValue)
        case .uint32: Int32(PH_FFI_UINT32.rawValue)
        case .uint64: Int32(PH_FFI_UINT64.rawValue)
        case .bool: Int32(PH_FFI_BOOL.rawValue)
        case .string: Int32(PH_FFI_STRING.rawValue)
        }
    }
}

extension FFIBinding.Function {
    /// Calls the function at `address` (worker side). Returns the raw return value.
    func call(_ address: UnsafeMutableRawPointer, deadline: UInt64, operationID: String) -> Int64? {
        var strings: [UnsafeMutablePointer<CChar>?] = []
        defer { strings.forEach { free($0) } }
        var types: [Int32] = []
        var values: [ph_ffi_value] = []
        for argument in arguments {
            var value = ph_ffi_value(integer: argument.integer, string: nil)
            switch argument.source {
            case .remainingMilliseconds?:
                value.integer = (Monotonic.Instant(nanoseconds: deadline) - .now).wholeMilliseconds
            case .operationID?:
                strings.append(strdup(operationID))
                value.string = UnsafePointer(strings.last!)
            case nil:
                if let text = argument.string {
                    strings.append(strdup(text))
                    value.string = UnsafePointer(strings.last!)
                }
            }
            types.append(argument.type.code)
            values.append(value)
        }
        var result: Int64 = 0
        let status = ph_ffi_call(address, Int32(arguments.count), types, values, returns.code, &result)
        return status == 0 ? result : nil
    }
}
