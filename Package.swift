// swift-tools-version: 6.1
import PackageDescription
import Foundation

// The git commit `pluginhost --version` prints: scripts/package.sh sets PLUGINHOST_GIT_COMMIT.
// A define of the shim's C file only, so that a new commit recompiles one file, not the package.
let gitCommit = ProcessInfo.processInfo.environment["PLUGINHOST_GIT_COMMIT"]
    .flatMap { commit in commit.allSatisfy { $0.isHexDigit || $0 == "-" || ($0.isLetter && $0.isLowercase) } ? commit : nil }
let buildInfo: [CSetting] = gitCommit.map { [.define("PLUGINHOST_GIT_COMMIT", to: $0)] } ?? []

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "pluginhost",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pluginhost", targets: ["PluginHostCLI"]),
        .library(name: "PluginHost", targets: ["PluginHost"]),
        .library(name: "pluginhost-shell", type: .dynamic, targets: ["ShellPluginEntry"]),
        .library(name: "pluginhost-mysql", type: .dynamic, targets: ["MySQLPluginEntry"]),
        .library(name: "pluginhost-postgresql", type: .dynamic, targets: ["PostgreSQLPluginEntry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // What Swift cannot import cleanly: FIFREEZE/FITHAW, pidfd, vfork spawn and fork-call,
        // statx mount ids, peer credentials, an async-signal-safe self-pipe.
        .target(name: "CPluginHostShim", cSettings: buildInfo),
        // System calls, child processes and JSON: shared by the host and the bundled plugins.
        .target(name: "PluginHostSupport", dependencies: ["CPluginHostShim"]),
        // The plugin ABI: one C header, the whole contract (plus build-time layout checks).
        .target(name: "PluginABI"),
        // Writing a plugin in Swift: a protocol and the adapter to the C descriptor.
        .target(name: "PluginKit", dependencies: ["PluginABI", "PluginHostSupport"]),
        // Vendor C libraries (Debian: libmariadb-dev, libpq-dev).
        .systemLibrary(name: "CMariaDB", pkgConfig: "libmariadb", providers: [.apt(["libmariadb-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // libffi calls for manifests of kind "ffi" (linked by the worker runtime only).
        .target(name: "CFFICall", linkerSettings: [.linkedLibrary("ffi")]),
        // The wire: every message between pluginhost's processes (host ↔ guard, host ↔ worker,
        // client ↔ session) as typed values with their encoders and decoders.
        .target(name: "PluginHostWire", dependencies: ["CPluginHostShim", "PluginHostSupport"]),
        // The freeze guard's runtime: nothing but the shim, Glibc and the wire, so that "nothing
        // allocates or logs while frozen" can be checked from its imports (ArchitectureTests).
        .target(name: "PluginHostGuard", dependencies: ["CPluginHostShim", "PluginHostWire"]),
        // The plugin worker's runtime: the only code that calls dlopen/dlsym, checks a plugin's
        // descriptor against the ABI and touches libffi.
        .target(name: "PluginHostWorker", dependencies: ["PluginABI", "CFFICall", "PluginHostSupport", "PluginHostWire"]),
        // TLS for the group process's etcd connections: the system's OpenSSL (libssl-dev).
        .target(name: "CPluginHostTLS", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        // The group process's runtime: the only code that talks to etcd (its JSON gateway, over
        // HTTP/1.1 or TLS), so that the host stays single-threaded and fork-safe.
        .target(name: "PluginHostGroup", dependencies: ["CPluginHostShim", "CPluginHostTLS", "PluginHostSupport", "PluginHostWire"]),
        // The engine: checks, the operation sequence, the freeze guard's and workers' handles,
        // reports. It never prints, exits, loads a plugin or rewires stdio.
        .target(
            name: "PluginHost",
            dependencies: [
                "CPluginHostShim",
                "PluginHostSupport",
                "PluginHostWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The two-phase session's runtime: its socket server and the stdio it lets go of.
        .target(name: "PluginHostSession", dependencies: ["PluginHost", "CPluginHostShim", "PluginHostSupport", "PluginHostWire"]),
        // The `pluginhost` executable: one file per command; it dispatches to each role.
        .executableTarget(
            name: "PluginHostCLI",
            dependencies: [
                "PluginHost",
                "PluginHostGuard",
                "PluginHostWorker",
                "PluginHostSession",
                "PluginHostGroup",
                "PluginHostSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Bundled plugin: the generic shell module (commands, or a command held between quiesce and resume).
        .target(name: "ShellQuiesce", dependencies: ["PluginKit", "PluginHostSupport"], path: "Sources/Plugins/Shell/Quiesce"),
        .target(name: "ShellPluginEntry", dependencies: ["ShellQuiesce", "PluginKit"], path: "Sources/Plugins/Shell/Entry"),
        // Bundled plugin: MySQL/MariaDB quiesce (logic apart from the one exported C symbol).
        .target(
            name: "MySQLQuiesce",
            dependencies: ["CMariaDB", "PluginKit", "PluginHostSupport"],
            path: "Sources/Plugins/MySQL/Quiesce"
        ),
        .target(
            name: "MySQLPluginEntry",
            dependencies: ["MySQLQuiesce", "PluginKit"],
            path: "Sources/Plugins/MySQL/Entry"
        ),
        .testTarget(
            name: "MySQLPluginTests",
            dependencies: ["MySQLQuiesce", "PluginKit", "PluginHostSupport"]
        ),
        // Bundled plugin: PostgreSQL quiesce (logic apart from the one exported C symbol).
        .target(
            name: "PostgreSQLQuiesce",
            dependencies: ["CLibPQ", "PluginKit", "PluginHostSupport"],
            path: "Sources/Plugins/PostgreSQL/Quiesce"
        ),
        .target(
            name: "PostgreSQLPluginEntry",
            dependencies: ["PostgreSQLQuiesce", "PluginKit"],
            path: "Sources/Plugins/PostgreSQL/Entry"
        ),
        .testTarget(
            name: "PostgreSQLPluginTests",
            dependencies: ["PostgreSQLQuiesce", "CLibPQ", "PluginKit", "PluginHostSupport"]
        ),
        .testTarget(
            name: "PluginHostTests",
            dependencies: ["PluginHost", "PluginHostSupport", "PluginHostWire", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "PluginHostWireTests", dependencies: ["PluginHostWire", "PluginABI", "PluginKit"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PluginHost", "PluginHostSupport", "PluginHostWire", "CPluginHostShim"]
        ),
    ]
)

for target in package.targets where target.type != .system && !["CPluginHostShim", "CPluginHostTLS", "PluginABI", "CFFICall"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + strict
}
