import Glibc

/// For the kill-matrix tests: with `PLUGINHOST_TEST_STOP_AT=STEP` in its environment, the host
/// (or two-phase session) stops itself with SIGSTOP at the start of that step — `checks`,
/// `prepare`, `pre-script`, `flush`, `quiesce`, `freeze`, `snapshot`, `thaw`, `resume`,
/// `post-script` — so that a test can signal it, its guard or a worker at exactly that point,
/// then continue it with SIGCONT. Unset, it costs one getenv per process.
enum TestStop {
    static let step: String? = getenv("PLUGINHOST_TEST_STOP_AT").map { String(cString: $0) }

    static func at(_ name: String) {
        if step == name { raise(SIGSTOP) }
    }
}
