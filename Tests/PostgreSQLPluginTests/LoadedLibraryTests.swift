import Glibc
import PluginHostSupport
import Testing

@testable import PostgreSQLQuiesce

/// The built libpluginhost-postgresql.so, driven through the C ABI alone by a small C program
/// compiled here (in its own process: every plugin exports the same symbol). Not the host's
/// loader — that is tested with the host — but proof that the library's descriptor, config
/// parsing and result buffers work from C.
@Suite(
    "PostgreSQL plugin: the shared library through the C ABI",
    .enabled(
        if: TestDatabase.isAvailable && LoadedLibrary.path != nil && LoadedLibrary.compiler != nil,
        "needs PGHOST, cc, and libpluginhost-postgresql.so next to the test bundle"))
struct LoadedLibraryTests {
    @Test("create, check, quiesce, resume and destroy from C")
    func lifecycle() throws {
        let directory = try TemporaryDirectory("pg-plugin-abi")
        let source = try directory.file("harness.c", LoadedLibrary.harness)
        let binary = directory.path + "/harness"
        let include = LoadedLibrary.packageDirectory + "/Sources/PluginABI/include"
        let compile = try run(
            LoadedLibrary.compiler!, ["-Wall", "-Werror", "-I", include, "-o", binary, source, "-ldl"])
        #expect(compile.status == .exited(0), "\(compile.output)")

        let config = #"{"conninfo": "\#(TestDatabase.conninfo)", "checkpointTimeoutSeconds": 30}"#
        let result = try run(binary, [LoadedLibrary.path!, config])
        #expect(result.status == .exited(0), "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("descriptor name=postgresql abi=1.0"))
        #expect(lines.contains("create=0"))
        #expect(lines.contains("check=0"))
        #expect(lines.contains("data_paths=0"))
        #expect(lines.contains("quiesce=0"))
        #expect(lines.contains("resume=0"))
        #expect(lines.contains { $0.hasPrefix("detail checkpoint_ms=") })
        #expect(lines.contains { $0.hasPrefix("message ") && $0.contains("ready") })

        let refused = try run(binary, [LoadedLibrary.path!, #"{"mode": 1}"#])
        #expect(refused.output.contains("create=2"))
        #expect(refused.output.contains("config key \"mode\""))
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> (status: Termination, output: String) {
        let child = try ChildProcess(
            spawning: Command(
                executable: executable, arguments: arguments,
                environment: ["PATH": "/usr/bin:/bin"]), outputCapacity: 1 << 16)
        guard case .exited(let status) = child.wait(until: Monotonic.Instant.now + .seconds(120)) else {
            child.terminateGroup()
            throw TestFailure("\(executable) did not finish within 120 s")
        }
        return (status, child.stdoutTail.text + child.stderrTail.text)
    }
}

enum LoadedLibrary {
    /// The package: three levels above this file.
    static var packageDirectory: String {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }

    /// Next to the test bundle, in the same build directory.
    static var path: String? {
        guard let executable = try? CredentialFiles.resolve("/proc/self/exe").get() else { return nil }
        var directory = String(executable[..<executable.lastIndex(of: "/")!])
        if directory.hasSuffix(".xctest") || directory.hasSuffix("/Contents/MacOS") {
            directory = String(directory[..<directory.lastIndex(of: "/")!])
        }
        let candidate = directory + "/libpluginhost-postgresql.so"
        return access(candidate, R_OK) == 0 ? candidate : nil
    }

    static var compiler: String? {
        ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first { access($0, X_OK) == 0 }
    }

    static let harness = #"""
        #include <dlfcn.h>
        #include <stdio.h>
        #include <string.h>
        #include <time.h>
        #include "pluginhost_plugin.h"

        static void host_log(void *context, int32_t level, const char *message) {
            (void)context;
            printf("log %d %s\n", level, message);
        }
        static uint64_t now_ns(void) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
        }
        static char message[4096], details[4096];
        static ph_call call_within(double seconds) {
            ph_call call;
            memset(&call, 0, sizeof call);
            call.struct_size = sizeof call;
            call.deadline_ns = now_ns() + (uint64_t)(seconds * 1e9);
            call.message = message; call.message_size = sizeof message;
            call.details = details; call.details_size = sizeof details;
            message[0] = details[0] = 0;
            return call;
        }
        static void report(const char *what, int32_t status) {
            printf("%s=%d\nmessage %s\n", what, status, message);
            for (char *line = strtok(details, "\n"); line; line = strtok(NULL, "\n")) printf("detail %s\n", line);
        }
        int main(int argc, char **argv) {
            if (argc != 3) return 2;
            void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
            if (!library) { printf("dlopen: %s\n", dlerror()); return 1; }
            const ph_plugin *(*entry)(void) = (const ph_plugin *(*)(void))dlsym(library, PH_PLUGIN_ENTRY_SYMBOL);
            if (!entry) { printf("no entry\n"); return 1; }
            const ph_plugin *plugin = entry();
            if (plugin->magic != PH_PLUGIN_MAGIC || plugin->struct_size < PH_PLUGIN_MIN_SIZE) { printf("bad descriptor\n"); return 1; }
            printf("descriptor name=%s abi=%u.%u\n", plugin->name, plugin->abi_major, plugin->abi_minor);
            const char *mounts[] = { NULL };
            ph_host host;
            memset(&host, 0, sizeof host);
            host.struct_size = sizeof host; host.abi_major = PH_ABI_MAJOR; host.abi_minor = PH_ABI_MINOR;
            host.log = host_log; host.operation_id = "abi-test"; host.freeze_mounts = mounts; host.now_ns = now_ns;
            ph_instance *instance = NULL;
            ph_call call = call_within(10);
            int32_t status = plugin->create(argv[2], &host, &instance, &call);
            report("create", status);
            if (status != PH_OK) return 0;
            call = call_within(30); report("check", plugin->check(instance, &call));
            call = call_within(30); report("data_paths", plugin->data_paths(instance, &call));
            call = call_within(30); call.hold_until_ns = now_ns() + 60000000000u;
            report("quiesce", plugin->quiesce(instance, &call));
            call = call_within(30); report("resume", plugin->resume(instance, &call));
            plugin->destroy(instance);
            return 0;
        }
        """#
}
