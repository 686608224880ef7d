//! Clients in another pid namespace (`unshare -pf`, with and without a
//! private /proc, nested): the server journals the client's own process
//! (its pid here and its start time), takes the port back when it dies
//! (kill -9), keeps it across a server kill -9 and restart; kernel threads
//! are denied; a server that cannot tell who the client is, or that does
//! not know the request (Python's), leaves the client to pick locally with
//! one warning that says why. Needs root (we are root here and in CI); says
//! it skipped otherwise.
#![cfg(target_os = "linux")]

mod support;

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

/// How the sandbox is made.
#[derive(Debug, Clone, Copy)]
enum Sandbox {
    /// `unshare -pf --mount-proc`: /proc shows the sandbox.
    OwnProc,
    /// `unshare -pf`: /proc still shows the host.
    HostProc,
    /// A sandbox in a sandbox, each with its own /proc.
    Nested,
}

impl Sandbox {
    /// `unshare ...` ready for the program to run inside.
    fn command(self) -> Command {
        // --kill-child: killing `unshare` (a test's Reaper) ends the
        // sandbox's init, and with it everything in the sandbox.
        let mut cmd = Command::new("unshare");
        cmd.arg("--kill-child");
        match self {
            Sandbox::OwnProc => cmd.args(["-pf", "--mount-proc"]),
            Sandbox::HostProc => cmd.args(["-pf"]),
            Sandbox::Nested => cmd.args([
                "-pf",
                "--mount-proc",
                "unshare",
                "--kill-child",
                "-pf",
                "--mount-proc",
            ]),
        };
        cmd
    }
}

fn portpicker() -> &'static str {
    env!("CARGO_BIN_EXE_portpicker")
}

/// The `portserver` binary on `address` with `args`, serving.
fn start_server(address: &str, args: &[String]) -> ServerProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portserver"));
    cmd.arg(format!("--portserver_address={address}"))
        .args(args);
    ServerProcess::start_command(cmd, address)
}

/// A `sleep` in a sandbox that `portpicker PID` got a port for from the
/// server at `address`; the sandbox lives until the sleep ends.
struct SandboxedOwner {
    _sandbox: Reaper,
    port: u16,
    /// The sleep's pid as the sandbox sees it.
    inner_pid: u32,
}

fn sandboxed_owner(sandbox: Sandbox, address: &str, portpicker: &str) -> SandboxedOwner {
    let script = r#"sleep 300 & "$0" "$!" && echo "$!" && wait"#;
    let mut child = sandbox
        .command()
        .args(["sh", "-c", script, portpicker])
        .env("PORTSERVER_ADDRESS", address)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let sandbox_process = Reaper(child);
    let lines = Lines::of(stdout);
    let line = || lines.next("the sandbox printed nothing");
    let port = line().parse().unwrap();
    let inner_pid = line().parse().unwrap();
    SandboxedOwner {
        _sandbox: sandbox_process,
        port,
        inner_pid,
    }
}

/// The owner the state file names for `port`.
fn journaled_owner(state: &Path, port: u16) -> (u32, u64) {
    let text = std::fs::read(state).unwrap();
    let contents = portpick::__private::server::parse_state(&text);
    let (_, owner) = contents
        .entries
        .iter()
        .rev()
        .find(|(p, _)| *p == port)
        .unwrap_or_else(|| panic!("port {port} is not in the journal"));
    (owner.pid, owner.start_time)
}

/// Checks that our pid `host` is the sandbox's `inner` pid, started at
/// `start`: a `sleep` in another pid namespace.
fn assert_is_sandboxed_sleep(host: u32, start: u64, inner: u32) {
    let status = std::fs::read(format!("/proc/{host}/status")).unwrap();
    let nspid = portpick::__private::pidns::parse_nspid(&status).unwrap();
    assert_eq!(
        (nspid.outer, nspid.inner),
        (host, inner),
        "journaled pid {host}"
    );
    assert!(nspid.levels > 1, "pid {host} is not in a sandbox");
    // `sleep 300 &` forks the shell first: on a loaded machine the child
    // may not have become `sleep` yet (it is the same process either way).
    let comm = || std::fs::read_to_string(format!("/proc/{host}/comm")).unwrap_or_default();
    assert!(
        eventually(|| comm().trim() == "sleep"),
        "journaled pid {host} is {:?}",
        comm()
    );
    let stat = std::fs::read(format!("/proc/{host}/stat")).unwrap();
    let stat = portpick::__private::server::parse_stat(&stat).unwrap();
    assert_eq!(stat.start_time, start);
}

fn kill_9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A server with a journal, a sandboxed owner; its port is journaled under
/// the owner's pid here and comes back when the owner is killed.
fn sandboxed_owner_gets_its_own_port(sandbox: Sandbox) {
    if !can_unshare_pid() {
        return;
    }
    let dir = TempDir::new("sandbox");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let address = unique_address("sandbox");
    let _server = start_server(&address, &[pool_arg(&ports), state_arg(&state)]);
    let owner = sandboxed_owner(sandbox, &address, portpicker());
    assert!(
        ports.contains(&owner.port),
        "{} not from the pool",
        owner.port
    );
    let (host, start) = journaled_owner(&state, owner.port);
    assert_is_sandboxed_sleep(host, start, owner.inner_pid);
    assert_eq!(stat(&address, "num-ports-held"), 1);
    kill_9(host);
    assert!(
        eventually(|| stat(&address, "num-ports-held") == 0),
        "port {} not reclaimed after its owner was killed",
        owner.port
    );
}

#[test]
fn sandbox_with_its_own_proc() {
    sandboxed_owner_gets_its_own_port(Sandbox::OwnProc);
}

#[test]
fn sandbox_that_sees_the_host_proc() {
    sandboxed_owner_gets_its_own_port(Sandbox::HostProc);
}

#[test]
fn sandbox_in_a_sandbox() {
    sandboxed_owner_gets_its_own_port(Sandbox::Nested);
}

#[test]
fn sandboxed_owners_survive_a_server_kill_9_and_restart() {
    if !can_unshare_pid() {
        return;
    }
    let dir = TempDir::new("sandbox-restart");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let address = unique_address("sandbox-restart");
    let args = [pool_arg(&ports), state_arg(&state)];
    let mut server = start_server(&address, &args);
    let first = sandboxed_owner(Sandbox::OwnProc, &address, portpicker());
    let second = sandboxed_owner(Sandbox::HostProc, &address, portpicker());
    server.child.kill();
    let _server = start_server(&address, &args);
    assert_eq!(stat(&address, "num-ports-held"), 2);
    // Both ports are still held: a host process gets none.
    let other = sleeper();
    assert_eq!(ask(&address, other.pid()), None);
    let (host, start) = journaled_owner(&state, first.port);
    assert_is_sandboxed_sleep(host, start, first.inner_pid);
    kill_9(host);
    assert!(eventually(|| stat(&address, "num-ports-held") == 1));
    assert_eq!(ask(&address, other.pid()), Some(first.port));
    let (host, start) = journaled_owner(&state, second.port);
    assert_is_sandboxed_sleep(host, start, second.inner_pid);
}

/// Someone asks for pids of a sandbox before they are born (as a request
/// for a bogus pid does): the server must not remember those misses
/// against the process that later has that pid and asks for itself.
#[test]
fn a_bogus_request_in_a_sandbox_does_not_deny_its_later_processes() {
    if !can_unshare_pid() {
        return;
    }
    let dir = TempDir::new("sandbox-bogus");
    let state = dir.path().join("state");
    let ports = pool_ports(1);
    let address = unique_address("sandbox-bogus");
    let _server = start_server(&address, &[pool_arg(&ports), state_arg(&state)]);
    // `$(...)` waits for its process: pid 2 has gone when the line is out.
    let script = r#"ns=$(stat -L -c %i /proc/self/ns/pid); echo "$ns"; read go; sleep 300 & "$0" "$!" && echo "$!" && wait"#;
    let mut child = Sandbox::OwnProc
        .command()
        .args(["sh", "-c", script, portpicker()])
        .env("PORTSERVER_ADDRESS", &address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut go = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _sandbox = Reaper(child);
    let lines = Lines::of(stdout);
    let line = || lines.next("the sandbox printed nothing");
    let ns: u64 = line().parse().unwrap();
    // The sandbox has its shell (1); the next pids are not born yet.
    for pid in 2..=20 {
        let reply = raw_request(&address, format!("pidns {ns} {pid}\n").as_bytes());
        assert!(
            reply.starts_with(b"0 "),
            "pid {pid}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    std::io::Write::write_all(&mut go, b"go\n").unwrap();
    let port: u16 = line().parse().unwrap();
    let inner: u32 = line().parse().unwrap();
    assert!(inner <= 20, "the sleep is pid {inner}, not one asked for");
    assert_eq!(port, ports[0]);
    let (host, start) = journaled_owner(&state, port);
    assert_is_sandboxed_sleep(host, start, inner);
}

/// The first kernel thread among pids 2 to 99 (pid 2 is `kthreadd` on a
/// host; a container has none).
fn a_kernel_thread() -> Option<u32> {
    (2..100).find(|pid| {
        std::fs::read(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| portpick::__private::server::parse_stat(&s).ok())
            .is_some_and(|s| s.is_kernel_thread())
    })
}

#[test]
fn a_kernel_thread_gets_no_port() {
    let Some(kthread) = a_kernel_thread() else {
        eprintln!("skipped: no kernel thread in sight (a container?)");
        return;
    };
    let (address, _server) = embedded(&pool_ports(1));
    // As a Python client in a sandbox asks: its low pid names a kernel
    // thread here, which never exits.
    assert_eq!(ask(&address, kthread), None);
    assert_eq!(stat(&address, "denied-pid"), 1);
    assert_eq!(stat(&address, "total-allocations"), 0);
}

#[test]
fn namespaced_requests_are_always_answered() {
    let (address, _server) = embedded(&pool_ports(1));
    let ours = portpick::__private::pidns::own_namespace().unwrap();
    let answer =
        |request: String| String::from_utf8(raw_request(&address, request.as_bytes())).unwrap();
    // Our namespace's init (the host's, here) never exits: denied, as the
    // plain request for pid 1 is.
    assert_eq!(answer(format!("pidns {ours} 1\n")), "0 pid 1 (init)\n");
    assert_eq!(answer(format!("pidns {ours} 0\n")), "0 invalid pid\n");
    assert_eq!(
        answer(format!("pidns {ours} {}\n", dead_pid())),
        "0 no such process\n"
    );
    // A namespace with no process in sight: the server cannot tell.
    let reply = answer("pidns 1 5\n".to_string());
    assert!(reply.starts_with("0 the server cannot see"), "{reply}");
    let reply = answer("pidns x 5\n".to_string());
    assert!(reply.starts_with("0 namespaced request is not"), "{reply}");
    assert_eq!(stat(&address, "denied-namespace-unknown"), 1);
    assert_eq!(stat(&address, "total-allocations"), 0);
    // Our own process, named through our namespace, gets a port.
    let reply = answer(format!("pidns {ours} {}\n", std::process::id()));
    reply.trim_end().parse::<u16>().unwrap();
}

/// A server that reads one request and closes without a word, as Python's
/// does with a request it cannot parse; gives back what it read.
fn silent_server(address: &str) -> std::thread::JoinHandle<Vec<u8>> {
    let listener = listen(address);
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 100];
        let n = stream.read(&mut buf).unwrap_or(0);
        buf[..n].to_vec()
    })
}

/// What `portpicker $$` in a sandbox printed: (stdout, stderr lines).
fn portpicker_in_sandbox(address: &str, portpicker: &str) -> (String, Vec<String>) {
    let out = run_bounded(
        Sandbox::OwnProc
            .command()
            .args(["sh", "-c", r#""$0" "$$""#, portpicker])
            .env("PORTSERVER_ADDRESS", address)
            // Its warnings are counted: none about the claims variable.
            .env_remove(portpick::CLAIMS_ENV),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (stdout, stderr.lines().map(str::to_string).collect())
}

#[test]
fn a_server_without_the_extension_means_a_local_pick_with_one_warning() {
    if !can_unshare_pid() {
        return;
    }
    let address = unique_address("sandbox-silent");
    let server = silent_server(&address);
    let (port, warnings) = portpicker_in_sandbox(&address, portpicker());
    let request = server.join().unwrap();
    assert!(
        request.starts_with(b"pidns "),
        "sent {:?}",
        String::from_utf8_lossy(&request)
    );
    port.parse::<u16>().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot serve a sandboxed client")
            && warnings[0].contains("picking a port locally"),
        "{warnings:?}"
    );
}

/// A sandbox whose `/proc` is hidden (a tmpfs over it): the client cannot
/// tell its namespace, so it must not send the plain request, whose pid
/// names a host process; it picks locally and says why, once.
#[test]
fn a_client_that_cannot_read_its_namespace_does_not_ask() {
    if !can_unshare_pid() {
        return;
    }
    let address = unique_address("sandbox-noproc");
    let _server = start_server(&address, &[pool_arg(&pool_ports(1))]);
    // The pid the client names is a live host process: the plain request
    // would give it the port.
    let host = sleeper();
    let script = r#"mount -t tmpfs none /proc || exit 99; exec "$0" "$1""#;
    let out = run_bounded(
        Command::new("unshare")
            .args(["--kill-child", "-m", "-pf", "sh", "-c", script])
            .arg(portpicker())
            .arg(host.pid().to_string())
            .env("PORTSERVER_ADDRESS", &address)
            // Its warnings are counted: none about the claims variable.
            .env_remove(portpick::CLAIMS_ENV),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(99) {
        eprintln!("skipped: cannot mount a tmpfs over /proc: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stat(&address, "total-allocations"), 0, "{stderr}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .unwrap();
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot read our pid namespace")
            && warnings[0].contains("picking a port locally"),
        "{warnings:?}"
    );
}

/// `src` copied into `dir` with mode 0755, for another user to run.
fn runnable_copy(src: &str, dir: &Path) -> String {
    let dst = dir.join(Path::new(src).file_name().unwrap());
    std::fs::copy(src, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dst.to_str().unwrap().to_string()
}

#[test]
fn a_server_that_cannot_see_the_sandbox_says_so() {
    if !can_unshare_pid() {
        return;
    }
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        eprintln!("skipped: needs root, to run the server as nobody");
        return;
    }
    let dir = TempDir::new("sandbox-nobody");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server_exe = runnable_copy(env!("CARGO_BIN_EXE_portserver"), dir.path());
    let address = unique_address("sandbox-nobody");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(server_exe)
        .arg(format!("--portserver_address={address}"))
        .arg(pool_arg(&pool_ports(1)));
    let server = ServerProcess::start_command(cmd, &address);
    // As nobody it cannot read root's namespace links: it cannot tell who
    // the client is, says so, and counts it.
    let (port, warnings) = portpicker_in_sandbox(&address, portpicker());
    port.parse::<u16>().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot see the processes")
            && warnings[0].contains("picking a port locally"),
        "{warnings:?}"
    );
    assert_eq!(stat(&address, "denied-namespace-unknown"), 1);
    assert_eq!(stat(&address, "total-allocations"), 0);
    assert!(server.wait_for_log("cannot see the processes"));
}
