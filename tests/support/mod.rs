//! Shared helpers for the integration tests: unique names, temp dirs, live
//! and dead processes, ports from the kernel, and the example portserver
//! as a child process. Every wait here is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portpick::server::{Level, PortServer, ServerConfig, ServerHandle};
use portpick::PortServerAddress;

/// A generous bound for anything that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test or process uses: pid, counter and clock.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "portpick-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh abstract-namespace address, `@portpick-test-...`.
pub fn unique_address(tag: &str) -> String {
    format!("@{}", unique(tag))
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A test may have made it read-only.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills and reaps a child when dropped, even when a test panics.
pub struct Reaper(pub Child);

impl Reaper {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills (SIGKILL) and reaps the child now.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A live process that the test can kill: `sleep 300`.
pub fn sleeper() -> Reaper {
    Reaper(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// `n` distinct ports the kernel says are free now (bound at once, then
/// released), for pools that must not collide with other tests.
pub fn kernel_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("[::]:0").or_else(|_| TcpListener::bind("127.0.0.1:0")))
        .collect::<Result<_, _>>()
        .unwrap();
    let mut ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), n);
    ports
}

/// `n` distinct ports for a test server's pool: free now, below the
/// kernel's ephemeral range (so no `bind(0)` anywhere is handed one while
/// the test runs, as a port the kernel just gave out and took back would
/// be), and claimed by an abstract unix socket named after the port, held
/// until this process exits (so test binaries running at once, from any
/// checkout in this network namespace, never share one).
pub fn pool_ports(n: usize) -> Vec<u16> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    static HELD: Mutex<Vec<UnixDatagram>> = Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Above the default portserver pool and the random-pick range
    // (15000-24999), below the ephemeral range.
    const LOW: u16 = 25000;
    if ephemeral_start < LOW + 1000 {
        return kernel_ports(n);
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32
        | 1;
    let span = u64::from(ephemeral_start - LOW);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..100 * span {
        if ports.len() == n {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = LOW + (seed % span) as u16;
        if ports.contains(&port) {
            continue;
        }
        let name = format!("portpick-tests-pool-port-{port}");
        let claim = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name).unwrap());
        // Claim first, probe second: a port another test process holds is
        // never probed (a probe is a brief bind, which its server would
        // see as the port being busy).
        if let Ok(claim) = claim {
            if portpick::is_port_free(port) {
                HELD.lock().unwrap().push(claim);
                ports.push(port);
            }
        }
    }
    assert_eq!(
        ports.len(),
        n,
        "not enough free ports below {ephemeral_start}"
    );
    ports.sort_unstable();
    ports
}

/// Polls `f` until it is true or `PATIENCE` runs out; returns the last value.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to a portserver address (`@name` or a path).
pub fn connect(address: &str) -> std::io::Result<UnixStream> {
    let addr: PortServerAddress = address.parse().unwrap();
    let sa = addr.to_socket_addr()?;
    let stream = UnixStream::connect_addr(&sa)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// Sends raw bytes as one request and reads the reply until EOF.
pub fn raw_request(address: &str, request: &[u8]) -> Vec<u8> {
    let mut s = connect(address).unwrap();
    s.write_all(request).unwrap();
    // Done writing: an empty or unterminated request ends here, at once.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => {}
        // The server may close with part of a bad request unread.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the reply from {address}: {e}"),
    }
    reply
}

/// Asks for a port for `pid` the way a Python client does.
pub fn ask(address: &str, pid: u32) -> Option<u16> {
    let reply = raw_request(address, format!("{pid}\n").as_bytes());
    if reply.is_empty() {
        return None;
    }
    let text = String::from_utf8(reply).unwrap();
    Some(text.trim_end().parse().unwrap())
}

/// The stats of a server as `name -> value`.
pub fn stats(address: &str) -> std::collections::BTreeMap<String, u64> {
    portpick::get_port_server_stats(address, PATIENCE)
        .unwrap()
        .into_iter()
        .collect()
}

/// One stat of a server.
pub fn stat(address: &str, name: &str) -> u64 {
    *stats(address)
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name}"))
}

/// An embedded server on a fresh abstract address with `ports`, quiet.
pub fn embedded(ports: &[u16]) -> (String, ServerHandle) {
    embedded_with(ports, |c| c)
}

/// An embedded server whose config `f` may change.
pub fn embedded_with(
    ports: &[u16],
    f: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (String, ServerHandle) {
    let address = unique_address("srv");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports.iter().copied())
        .log_level(Level::Error);
    let server = PortServer::new(f(config)).start().unwrap();
    (address, server)
}

/// Path of a binary cargo built for the examples (`target/*/examples/NAME`).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds examples; run `cargo build --examples`",
        path.display()
    );
    path
}

/// The example portserver running as a child process.
pub struct ServerProcess {
    pub child: Reaper,
    pub address: String,
    /// Every stderr line so far (a thread keeps reading them).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `portserver` with `args` on `address` and waits for
    /// `Serving on`. Panics with the log when it exits or does not serve.
    pub fn start(address: &str, args: &[&str]) -> ServerProcess {
        Self::try_start(address, args)
            .unwrap_or_else(|log| panic!("portserver did not start serving; its log:\n{log}"))
    }

    /// As `start`, but gives the log back when the server does not serve.
    pub fn try_start(address: &str, args: &[&str]) -> Result<ServerProcess, String> {
        let mut cmd = Command::new(example_path("portserver"));
        cmd.arg(format!("--portserver_address={address}"))
            .args(args);
        Self::try_start_command(cmd, address)
    }

    /// Starts a prepared portserver command that listens on `address`.
    pub fn start_command(cmd: Command, address: &str) -> ServerProcess {
        Self::try_start_command(cmd, address)
            .unwrap_or_else(|log| panic!("portserver did not start serving; its log:\n{log}"))
    }

    fn try_start_command(mut cmd: Command, address: &str) -> Result<ServerProcess, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Reaper(cmd.spawn().unwrap());
        let stderr = child.0.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        read_lines(stderr, Arc::clone(&log), tx);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Serving on") => break,
                Ok(_) => continue,
                Err(_) => {
                    child.kill();
                    return Err(log.lock().unwrap().join("\n"));
                }
            }
        }
        Ok(ServerProcess {
            child,
            address: address.to_string(),
            log,
        })
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        eventually(|| self.log.lock().unwrap().iter().any(|l| l.contains(needle)))
    }
}

fn read_lines(stderr: ChildStderr, log: Arc<Mutex<Vec<String>>>, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
}

/// Runs the example portserver to completion (for flag errors), bounded.
pub fn run_portserver(args: &[&str]) -> std::process::Output {
    let child = Command::new(example_path("portserver"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, PATIENCE)
}

/// Waits for a child's output, killing it when `limit` passes.
pub fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f(thread index)` on `threads` threads at once and gathers what
/// they return, in thread order.
pub fn in_threads<T: Send>(threads: usize, f: impl Fn(usize) -> Vec<T> + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn({
                    let f = &f;
                    move || f(t)
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// An embedded server on `ports` whose prober calls every port free and
/// whose processes are the fake table `procs` (for pid reuse and pools
/// larger than real processes make practical).
pub fn fake_server(
    ports: impl IntoIterator<Item = u16>,
    procs: &Arc<portpick::__fuzz::FakeProcesses>,
    f: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (String, ServerHandle) {
    let address = unique_address("fake");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports)
        .log_level(Level::Error);
    let server = PortServer::new(f(config))
        .prober(portpick::__fuzz::FakeProber::default())
        .process_table(Arc::clone(procs))
        .start()
        .unwrap();
    (address, server)
}
