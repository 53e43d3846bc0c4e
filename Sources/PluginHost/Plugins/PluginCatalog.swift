import Glibc
import PluginHostSupport
public import PluginHostWire

/// Every manifest in a plugins directory, each verified (or refused, with the reason).
public struct PluginCatalog {
    public struct Entry {
        public enum State: Sendable, Equatable {
            /// Verified; may be loaded.
            case ready
            /// `"enabled": false`: its manifest is read, its library never opened (only `list`
            /// verifies and loads it, a few at a time, to say whether it would load).
            case disabled
            case refused(PluginRefusal)
        }

        /// The manifest file as found in the directory.
        public var manifestPath: String
        public var manifest: PluginManifest?
        public var library: VerifiedLibrary?
        public var state: State

        /// The name for people: the manifest's, or the file's while the manifest is unreadable.
        public var name: String {
            manifest?.name ?? String(manifestPath.split(separator: "/").last ?? "").replacingJSONSuffix()
        }
    }

    /// At most this many plugins are enabled in one directory: each runs in a worker process
    /// of every operation, with its descriptors. Enabled manifests past it (in name order) are
    /// refused, their libraries never opened.
    public static let maximumEnabled = 64

    public var directory: String
    public var entries: [Entry]
    public var warnings: [String]

    public var refusals: [HostError] {
        entries.compactMap { entry in
            guard case .refused(let refusal) = entry.state else { return nil }
            return HostError(
                .incorrectPluginhostFile,
                "plugin \(entry.name) (\(entry.manifestPath)) refused by the \(refusal.check.rawValue) check: \(refusal.message)",
                step: "checks")
        }
    }

    /// Reads `directory` (nil: the default, which may be absent). Manifests are taken in name
    /// order; files that are not `NN-name.json` are listed as warnings and ignored.
    public static func load(directory explicit: String?) -> PluginCatalog {
        let directory = explicit ?? PluginManifest.defaultPluginsDirectory
        var catalog = PluginCatalog(directory: directory, entries: [], warnings: [])
        let found: [String]
        do {
            found = try FileSystem.entries(of: directory)
        } catch {
            if explicit != nil || error.errno != ENOENT {
                catalog.warnings.append("cannot read the plugins directory \(directory): \(error)")
            }
            return catalog
        }
        var names: [String] = []
        for name in found {
            if PluginManifest.isManifestName(name) {
                names.append(name)
            } else {
                catalog.warnings.append("\(directory)/\(name) ignored: manifests are named NN-name.json")
            }
        }
        var seen: [String: String] = [:]
        var enabled = 0
        for name in names.sorted() {
            let path = "\(directory)/\(name)"
            let manifest: PluginManifest
            switch PluginVerifier.readManifest(path) {
            case .success(let parsed): manifest = parsed
            case .failure(let refusal):
                catalog.entries.append(Entry(manifestPath: path, manifest: nil, library: nil, state: .refused(refusal)))
                continue
            }
            defer { seen[manifest.name] = path }
            if let earlier = seen[manifest.name] {
                catalog.entries.append(
                    Entry(
                        manifestPath: path, manifest: manifest, library: nil,
                        state: .refused(
                            PluginRefusal(.manifest, "the name \(manifest.name) is already used by \(earlier)"))))
            } else if !manifest.enabled {
                catalog.entries.append(Entry(manifestPath: path, manifest: manifest, library: nil, state: .disabled))
            } else if enabled >= maximumEnabled {
                catalog.entries.append(
                    Entry(
                        manifestPath: path, manifest: manifest, library: nil,
                        state: .refused(
                            PluginRefusal(
                                .manifest,
                                """
                                more than \(maximumEnabled) plugins are enabled in \(directory), the most one \
                                operation runs (each in a worker process): disable some (\"enabled\": false)
                                """
                            ))))
            } else {
                enabled += 1
                catalog.entries.append(verifyLibrary(of: manifest, manifestPath: path))
            }
        }
        return catalog
    }

    /// Verifies one manifest and, when it is enabled, its library.
    public static func verify(_ manifestPath: String) -> Entry {
        switch PluginVerifier.readManifest(manifestPath) {
        case .success(let manifest) where !manifest.enabled:
            return Entry(manifestPath: manifestPath, manifest: manifest, library: nil, state: .disabled)
        case .success(let manifest):
            return verifyLibrary(of: manifest, manifestPath: manifestPath)
        case .failure(let refusal):
            return Entry(manifestPath: manifestPath, manifest: nil, library: nil, state: .refused(refusal))
        }
    }

    /// Verifies the library of a parsed manifest (enabled or not: `list` verifies disabled ones).
    public static func verifyLibrary(of manifest: PluginManifest, manifestPath: String) -> Entry {
        switch PluginVerifier.verifyLibrary(manifest.library, expectedSHA256: manifest.sha256) {
        case .success(let library):
            return Entry(
                manifestPath: manifestPath, manifest: manifest, library: library,
                state: manifest.enabled ? .ready : .disabled)
        case .failure(let refusal):
            return Entry(manifestPath: manifestPath, manifest: manifest, library: nil, state: .refused(refusal))
        }
    }
}

extension String {
    fileprivate func replacingJSONSuffix() -> String {
        hasSuffix(".json") ? String(dropLast(5)) : self
    }
}
