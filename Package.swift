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
        // libffi calls for manifests of kind "ffi" (the only code that touches libffi).
        .target(name: "CFFICall", linkerSettings: [.linkedLibrary("ffi")]),
        .target(
            name: "PluginHost",
            dependencies: [
                "CPluginHostShim",
                "PluginHostSupport",
                "PluginABI",
                "CFFICall",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "PluginHostCLI",
            dependencies: [
                "PluginHost",
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
            dependencies: ["PluginHost", "PluginHostSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PluginHost", "PluginHostSupport", "CPluginHostShim"]
        ),
    ]
)

for target in package.targets where target.type != .system && !["CPluginHostShim", "PluginABI", "CFFICall"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + strict
}
