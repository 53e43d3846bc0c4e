// swift-tools-version: 6.1
import PackageDescription

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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // What Swift cannot import cleanly: FIFREEZE/FITHAW, pidfd, posix_spawn extensions,
        // an async-signal-safe self-pipe.
        .target(name: "CPluginHostShim"),
        .target(
            name: "PluginHost",
            dependencies: [
                "CPluginHostShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "PluginHostCLI",
            dependencies: [
                "PluginHost",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "PluginHostTests",
            dependencies: ["PluginHost", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["PluginHost", "CPluginHostShim"]
        ),
    ]
)

for target in package.targets where target.type != .system && target.name != "CPluginHostShim" {
    target.swiftSettings = (target.swiftSettings ?? []) + strict
}
