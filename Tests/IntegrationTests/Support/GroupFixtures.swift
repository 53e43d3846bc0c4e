import Glibc
import PluginHost
import PluginHostSupport
import Synchronization

/// Debian's etcd (`etcd-server`, `etcd-client`): the consistency group tests need both.
let etcdBinary = [String](arrayLiteral: "/usr/bin/etcd", "/usr/local/bin/etcd").first { access($0, X_OK) == 0 }
let etcdctlBinary = [String](arrayLiteral: "/usr/bin/etcdctl", "/usr/local/bin/etcdctl").first { access($0, X_OK) == 0 }
let ipBinary = [String](arrayLiteral: "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip").first {
    access($0, X_OK) == 0
}

/// A single-node etcd started by the test: its own data directory, client and peer ports
/// below the kernel's ephemeral range, listening on loopback and on the given addresses (the
/// host ends of the members' veth links). Killed on deinit.
final class EtcdServer {
    let scratch: Scratch
    let clientPort: Int
    let peerPort: Int
    let addresses: [String]
    private(set) var process: ChildProcess?
    private let tls: EtcdTLS?

    init(listeningOn addresses: [String] = [], tls: EtcdTLS? = nil) throws {
        guard let etcdBinary else { throw FixtureError("no etcd binary (apt install etcd-server)") }
        scratch = Scratch("etcd")
        self.addresses = ["127.0.0.1"] + addresses
        self.tls = tls
        var ports: (Int, Int) = (0, 0)
        repeat {
            let base = Int.random(in: 21_000...31_000)
            ports = (base, base + 1)
        } while portInUse(ports.0) || portInUse(ports.1)
        (clientPort, peerPort) = ports
        let scheme = tls == nil ? "http" : "https"
        var arguments = [
            "--name", "test", "--data-dir", scratch.path + "/data",
            "--listen-client-urls", self.addresses.map { "\(scheme)://\($0):\(clientPort)" }.joined(separator: ","),
            "--advertise-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)", "--initial-advertise-peer-urls",
            "http://127.0.0.1:\(peerPort)",
            "--initial-cluster", "test=http://127.0.0.1:\(peerPort)", "--initial-cluster-state", "new",
        ]
        if let tls {
            arguments += [
                "--cert-file", tls.serverCert, "--key-file", tls.serverKey, "--client-cert-auth", "--trusted-ca-file",
                tls.caCert,
            ]
        }
        process = try ChildProcess(
            spawning: Command(executable: etcdBinary, arguments: arguments, environment: ["PATH": "/usr/bin:/bin"]),
            outputCapacity: 1 << 20)
        let limit = Monotonic.now() + 30_000_000_000
        while Monotonic.now() < limit {
            if case .exited(let termination) = process!.wait(until: .now) {
                throw FixtureError("etcd exited (\(termination)): \(process!.stderrTail.text.suffix(2000))")
            }
            if etcdctl(["endpoint", "health"]).succeeded { return }
            usleep(100_000)
        }
        throw FixtureError("etcd did not become healthy: \(process!.stderrTail.text.suffix(2000))")
    }

    deinit { kill() }

    /// The client URL as seen from `address` (one of the listening ones).
    func url(_ address: String = "127.0.0.1") -> String {
        "\(tls == nil ? "http" : "https")://\(address):\(clientPort)"
    }

    /// SIGKILL: etcd is gone at once (its clients' connections are reset).
    func kill() {
        process?.signalGroup(SIGKILL)
        _ = process?.wait(until: Monotonic.Instant.now + .seconds(10))
        process = nil
    }

    /// Runs etcdctl (the real client, as a cross-check) against this server.
    func etcdctl(_ arguments: [String]) -> CommandOutput {
        var options = ["--endpoints", url(), "--dial-timeout", "2s", "--command-timeout", "5s"]
        if let tls { options += ["--cacert", tls.caCert, "--cert", tls.clientCert, "--key", tls.clientKey] }
        return capture(
            etcdctlBinary ?? "/usr/bin/etcdctl", options + arguments, environment: ["ETCDCTL_API": "3"],
            timeoutSeconds: 30)
    }

    /// Every key under `prefix`.
    func keys(under prefix: String) -> [String] {
        etcdctl(["get", "--prefix", "--keys-only", prefix]).stdout.split(separator: "\n").map(String.init).filter {
            !$0.isEmpty
        }
    }
}

/// Whether any TCP socket uses `port` locally (listening, connected or in TIME_WAIT).
func portInUse(_ port: Int) -> Bool {
    sh("ss -Htan | awk '{print $4}' | grep -q ':\(port)$'") == 0
}

/// A CA, an etcd server certificate (for 127.0.0.1 and the given addresses) and a client
/// certificate, made with the openssl command in a scratch directory of their own (kept as long
/// as this is); the client key is root's, mode 0600.
final class EtcdTLS {
    let scratch = Scratch("pki")
    let caCert: String
    let serverCert: String
    let serverKey: String
    let clientCert: String
    let clientKey: String

    init(addresses: [String] = []) throws {
        let d = scratch.mkdir("pki")
        let names = (["127.0.0.1"] + addresses).map { "IP:\($0)" }.joined(separator: ",")
        let script = """
            set -e
            cd '\(d)'
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=pluginhost test CA' -keyout ca.key -out ca.crt 2>/dev/null
            printf 'subjectAltName=\(names)\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            openssl req -newkey rsa:2048 -nodes -subj '/CN=etcd' -keyout server.key -out server.csr 2>/dev/null
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl req -newkey rsa:2048 -nodes -subj '/CN=pluginhost' -keyout client.key -out client.csr 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.crt 2>/dev/null
            chmod 600 *.key; chmod 644 *.crt
            """
        guard sh(script) == 0 else { throw FixtureError("openssl could not make the test certificates") }
        caCert = d + "/ca.crt"
        serverCert = d + "/server.crt"
        serverKey = d + "/server.key"
        clientCert = d + "/client.crt"
        clientKey = d + "/client.key"
    }
}

/// The /30 subnets of 10.211.0.0/16 handed out in this process, in turn: each namespace alive
/// at once needs its own. Picked at random, two rigs of suites running side by side once got the
/// same one, and a member's connection to etcd went to the other rig's link. Each test process
/// starts in a /24 of its own (by pid), so that two runs on one machine do not walk the same
/// sequence.
private let subnetsHandedOut = Mutex(Int(getpid()) % 256 * 64)

/// A network namespace with a veth link to the root namespace: `address` inside, `gateway` on
/// the host side (a /30 of its own). Deleted on deinit (which removes the link too).
final class NetworkNamespace {
    let name: String
    let address: String
    let gateway: String
    let hostSide: String

    init(index: Int) throws {
        guard let ipBinary else { throw FixtureError("no ip command") }
        let tag = String(UInt32.random(in: 0..<0x10000), radix: 16)
        name = "phg\(tag)-\(index)"
        hostSide = "phv\(tag)\(index)"
        let ip = ipBinary
        // The next /30 that no interface on this machine uses yet (another test process may
        // have taken it).
        var subnet: (octet: Int, base: Int)
        var tried = 0
        repeat {
            tried += 1
            guard tried <= 256 * 64 else { throw FixtureError("every /30 of 10.211.0.0/16 is in use") }
            let next = subnetsHandedOut.withLock { count in
                defer { count += 1 }
                return count
            }
            subnet = (next / 64 % 256, next % 64 * 4)
        } while capture(ip, ["-o", "-4", "addr", "show", "to", "10.211.\(subnet.octet).\(subnet.base)/30"]).stdout != ""
        gateway = "10.211.\(subnet.octet).\(subnet.base + 1)"
        address = "10.211.\(subnet.octet).\(subnet.base + 2)"
        let script = """
            set -e
            \(ip) netns add \(name)
            \(ip) link add \(hostSide) type veth peer name eth0 netns \(name)
            \(ip) addr add \(gateway)/30 dev \(hostSide)
            \(ip) link set \(hostSide) up
            \(ip) -n \(name) addr add \(address)/30 dev eth0
            \(ip) -n \(name) link set eth0 up
            \(ip) -n \(name) link set lo up
            """
        guard sh(script) == 0 else {
            sh("\(ip) netns del \(name) 2>/dev/null; \(ip) link del \(hostSide) 2>/dev/null")
            throw FixtureError("cannot set up network namespace \(name)")
        }
    }

    deinit {
        if let ipBinary {
            sh("\(ipBinary) netns del \(name) 2>/dev/null; \(ipBinary) link del \(hostSide) 2>/dev/null")
        }
    }

    /// Cuts the link (both ends down): what crosses it now is lost, like a dead machine's.
    func cut() {
        if let ipBinary { sh("\(ipBinary) link set \(hostSide) down; \(ipBinary) -n \(name) link set eth0 down") }
    }
}

/// One member machine of a consistency group: its own run and state directories, its own loop
/// filesystem, and (when given) its own network namespace, from which it reaches etcd.
final class GroupMachine {
    let id: String
    let host: HostSandbox
    let fs: LoopFilesystem
    let namespace: NetworkNamespace?
    let etcdURL: String

    init(id: String, etcd: (NetworkNamespace?) -> String, namespace: NetworkNamespace?) throws {
        self.id = id
        host = HostSandbox("grp-\(id)")
        fs = try LoopFilesystem(in: host.scratch, name: "fs-\(id)")
        self.namespace = namespace
        etcdURL = etcd(namespace)
    }

    /// Scripts that log to a file outside the frozen filesystem; the pre-script runs `preExtra`.
    func config(preExtra: String = "") -> String {
        let log = host.scratch.path + "/phases.log"
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log)\n\(preExtra)\n")
        let post = host.script(
            "post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT $PLUGINHOST_CONSISTENCY\" >> \(log)\n")
        return host.config(pre: pre, post: post)
    }

    /// A snapshot command that records the group's environment, then runs `then` (shell).
    func snapshotCommand(_ then: String = "") -> String {
        host.script(
            "snapshot.sh",
            """
            #!/bin/sh
            echo "$PLUGINHOST_GROUP $PLUGINHOST_GROUP_MEMBER $PLUGINHOST_GROUP_OPERATION_ID" > '\(host.scratch.path)/snapshot.env'
            touch '\(host.scratch.path)/frozen.marker'
            \(then)
            """)
    }

    func groupArguments(group: String, members: Int, ttl: Int = 3, timeout: Int = 60, extra: [String] = []) -> [String]
    {
        [
            "--group", group, "--member", id, "--members", String(members), "--etcd", etcdURL,
            "--group-ttl", String(ttl), "--group-timeout", String(timeout),
        ] + extra
    }

    /// Starts `pluginhost ARGS` on this machine (inside its namespace).
    func start(_ arguments: [String]) -> RunningHost {
        var command = [pluginhostBinary] + arguments
        if let namespace, let ipBinary { command = [ipBinary, "netns", "exec", namespace.name] + command }
        return RunningHost(
            try! ChildProcess(
                spawning: Command(
                    executable: command[0], arguments: Array(command.dropFirst()),
                    environment: host.environment),
                outputCapacity: 16 << 20))
    }

    func invoke(_ arguments: [String]) -> Invocation { start(arguments).finish() }

    /// A write to the filesystem by a child process (never the test itself): it stays blocked
    /// while the filesystem is frozen. Keep it until the thaw (dropping a blocked one thaws).
    func probe() throws -> Writer {
        try Writer(file: fs.mountPoint + "/probe-\(UInt32.random(in: 0..<UInt32.max))")
    }

    /// Waits until the snapshot command runs (so the filesystem is frozen).
    func waitForMarker(_ name: String = "frozen.marker", timeoutSeconds: Double = 60) -> Bool {
        let limit = Monotonic.now() + UInt64(timeoutSeconds * 1e9)
        while Monotonic.now() < limit {
            if host.scratch.exists(name) { return true }
            usleep(20_000)
        }
        return false
    }
}

/// The pids of `pid`'s children.
func childPIDs(of pid: Int32) -> [Int32] {
    guard let file = try? FileDescriptor.open("/proc/\(pid)/task/\(pid)/children", O_RDONLY),
        let bytes = try? file.readAll(limit: 65536)
    else { return [] }
    return String(decoding: bytes, as: UTF8.self).split(separator: " ").compactMap { Int32(String($0).trimmed()) }
}

/// A process's command line, arguments joined by spaces.
func commandLine(of pid: Int32) -> String {
    guard let file = try? FileDescriptor.open("/proc/\(pid)/cmdline", O_RDONLY),
        let bytes = try? file.readAll(limit: 65536)
    else { return "" }
    return String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
}

extension RunningHost {
    /// Kills the member like a dead machine: its group process first (so it cannot tell the
    /// others), then the host; the freeze guard thaws when the host is gone.
    func killLikeADeadMachine() {
        for child in childPIDs(of: pid) where commandLine(of: child).contains("__group") {
            Glibc.kill(child, SIGKILL)
        }
        Glibc.kill(pid, SIGKILL)
    }
}
