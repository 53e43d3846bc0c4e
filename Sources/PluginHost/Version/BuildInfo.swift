import CPluginHostShim

/// What this build of pluginhost is: its version, the commit it was built from, and the
/// version of the JSON documents it writes.
public enum BuildInfo {
    /// The release version (semantic versioning); the Debian package takes it from here.
    public static let version = "0.9.0"

    /// The git commit the binary was built from (`-dirty` when the tree had changes), as
    /// scripts/package.sh embeds it (PLUGINHOST_GIT_COMMIT in the build environment); "unknown"
    /// for a plain `swift build`.
    public static let commit: String = String(cString: ph_build_commit())

    /// The version of the JSON documents (reports, `list`, `check`, `status`, `history`,
    /// `recover`, the freeze notice). It changes only when a key is removed or changes meaning;
    /// new keys may appear at any time within the same schema version.
    public static let schemaVersion = 1

    /// "pluginhost 0.9.0 (commit 1a2b3c4d5e6f)".
    public static var versionLine: String { "pluginhost \(version) (commit \(commit))" }
}
