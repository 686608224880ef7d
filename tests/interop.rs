//! Wire compatibility with Google's Python portpicker 1.6.0, both ways.
//!
//! Run by `.ci/run`, which installs `portpicker==1.6.0` into a virtual
//! environment and sets `PORTPICK_PYTHON` to its interpreter. Plain
//! `cargo test` skips these; when run, a missing Python or package fails.
#![cfg(unix)]

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portpick::server::{PortServer, ServerConfig, ServerHandle};

const IGNORE: &str = "needs Python's portpicker: run by .ci/run";

fn python() -> PathBuf {
    let py = std::env::var_os("PORTPICK_PYTHON")
        .expect("PORTPICK_PYTHON must name a python with portpicker 1.6.0 (see .ci/run)");
    let out = Command::new(&py)
        .args([
            "-c",
            "import portpicker, importlib.metadata as m; print(m.version('portpicker'))",
        ])
        .output()
        .expect("PORTPICK_PYTHON does not run");
    assert!(
        out.status.success(),
        "portpicker is not importable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.6.0");
    PathBuf::from(py)
}

fn unique_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "@portpick-interop-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `n` ports the kernel says are free now (bound, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| portpick::bind_unused_tcp().unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Kills and reaps a child when dropped, even when a test panics.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Reaper {
    Reaper(Command::new("sleep").arg("60").spawn().unwrap())
}

fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

fn our_server(address: &str, ports: &[u16]) -> ServerHandle {
    let config = ServerConfig::new(address.parse().unwrap()).ports(ports.iter().copied());
    PortServer::new(config).start().unwrap()
}

fn run_python(code: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(python());
    cmd.args(["-c", code]).env_remove("PORTSERVER_ADDRESS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stat(server: &ServerHandle, name: &str) -> u64 {
    server
        .stats()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn python_client_gets_ports_from_our_server() {
    let _ = IGNORE;
    let ports = free_ports(4);
    let name = unique_name("pyclient");
    let server = our_server(&name, &ports);
    let owner = sleeper();
    let code = format!(
        "import portpicker\nfor _ in range(2): print(portpicker.get_port_from_port_server('{name}', pid={}))",
        owner.0.id()
    );
    let got = stdout(&run_python(&code, &[]));
    let got: Vec<u16> = got.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got.len(), 2);
    assert_ne!(got[0], got[1], "two allocations for one pid must differ");
    assert!(
        got.iter().all(|p| ports.contains(p)),
        "{got:?} not from pool {ports:?}"
    );
    assert_eq!(stat(&server, "total-allocations"), 2);

    let code = format!(
        "import portpicker\nprint(portpicker.get_port_from_port_server('{name}', pid={}))",
        dead_pid()
    );
    assert_eq!(stdout(&run_python(&code, &[])), "None");
    assert_eq!(stat(&server, "denied-allocations"), 1);
    server.stop();
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn python_client_on_a_path_socket() {
    let ports = free_ports(2);
    let dir = std::env::temp_dir().join(format!(
        "portpick-interop-{}-{}",
        std::process::id(),
        unique_name("d").len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ps.sock");
    let server = our_server(path.to_str().unwrap(), &ports);
    let owner = sleeper();
    let code = format!(
        "import portpicker\nprint(portpicker.get_port_from_port_server({:?}, pid={}))",
        path.to_str().unwrap(),
        owner.0.id()
    );
    let port: u16 = stdout(&run_python(&code, &[])).parse().unwrap();
    assert!(ports.contains(&port));
    server.stop();
    assert!(!path.exists(), "stop removes the socket file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn python_cli_with_portserver_address_uses_our_server() {
    let ports = free_ports(3);
    let name = unique_name("pycli");
    let server = our_server(&name, &ports);
    let owner = sleeper();
    let out = Command::new(python())
        .args(["-m", "portpicker", &owner.0.id().to_string()])
        .env("PORTSERVER_ADDRESS", &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port: u16 = stdout(&out).parse().unwrap();
    assert!(ports.contains(&port), "{port} not from pool {ports:?}");
    assert_eq!(stat(&server, "total-allocations"), 1);
    server.stop();
}

/// Python's portserver.py on a fresh abstract name, killed on drop.
fn python_server(name: &str, ports: &[u16]) -> Reaper {
    let py = python();
    let script = py.parent().unwrap().join("portserver.py");
    assert!(script.exists(), "{} is missing", script.display());
    let pool: Vec<String> = ports.iter().map(|p| format!("{p}-{p}")).collect();
    let child = Command::new(&py)
        .arg(&script)
        .arg(format!("--portserver_address={name}"))
        .arg(format!("--portserver_static_pool={}", pool.join(",")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reaper = Reaper(child);
    let addr: portpick::PortServerAddress = name.parse().unwrap();
    let addr = addr.to_socket_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect_addr(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "Python's portserver did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reaper
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn our_client_and_cli_against_python_server() {
    let ports = free_ports(4);
    let name = unique_name("pyserver");
    let _server = python_server(&name, &ports);
    // Our probe connection above was an empty request to Python's server:
    // it logs an error and goes on serving.
    let owner = sleeper();
    let port = portpick::get_port_from_port_server(&name, Some(owner.0.id())).unwrap();
    assert!(ports.contains(&port));

    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(owner.0.id().to_string())
        .env("PORTSERVER_ADDRESS", &name)
        .output()
        .unwrap();
    assert!(out.status.success());
    let cli_port: u16 = stdout(&out).parse().unwrap();
    assert!(ports.contains(&cli_port) && cli_port != port);

    match portpick::get_port_from_port_server(&name, Some(dead_pid())) {
        Err(portpick::PortServerError::NoPort { .. }) => {}
        other => panic!("dead pid: expected NoPort, got {other:?}"),
    }
    // Python's server does not know `stats`: it closes without a word.
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .args(["--stats", &name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("answered no statistics"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn is_port_free_agrees_with_python() {
    let tcp = TcpListener::bind("0.0.0.0:0").unwrap();
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").ok();
    let free = free_ports(1)[0];
    let mut cases = vec![
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
        free,
    ];
    if let Some(l) = &v6 {
        cases.push(l.local_addr().unwrap().port());
    }
    let list: Vec<String> = cases.iter().map(u16::to_string).collect();
    let code = format!(
        "import portpicker\nfor p in [{}]: print(bool(portpicker.is_port_free(p)))",
        list.join(",")
    );
    let theirs: Vec<bool> = stdout(&run_python(&code, &[]))
        .lines()
        .map(|l| l == "True")
        .collect();
    let ours: Vec<bool> = cases.iter().map(|&p| portpick::is_port_free(p)).collect();
    assert_eq!(ours, theirs, "ports {cases:?}");
    assert!(!ours[0] && !ours[1], "held ports must be busy");
}

/// `unshare -pf --mount-proc sh -c SCRIPT ARGS...`, run to completion; `None`
/// (skipped, with the reason printed) when no pid namespace can be made.
fn in_sandbox(script: &str, args: &[&str], address: &str) -> Option<Output> {
    let ok = Command::new("unshare")
        .args(["-pf", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot make a pid namespace here (needs root)");
        return None;
    }
    let out = Command::new("unshare")
        .args(["-pf", "--mount-proc", "sh", "-c", script])
        .args(args)
        .env("PORTSERVER_ADDRESS", address)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn our_sandboxed_cli_against_python_server_picks_locally_with_one_warning() {
    let ports = free_ports(2);
    let name = unique_name("pyserver-sandbox");
    let _server = python_server(&name, &ports);
    let cli = env!("CARGO_BIN_EXE_portpicker");
    let Some(out) = in_sandbox(r#""$0" "$$""#, &[cli], &name) else {
        return;
    };
    let port: u16 = stdout(&out).parse().unwrap();
    // Python's server would have given the sandbox's pid 1 (a host
    // process's number) a port from its pool: it was not asked.
    assert!(!ports.contains(&port));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot serve a sandboxed client"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs Python's portpicker: run by .ci/run"]
fn python_client_in_a_sandbox_is_not_given_a_kernel_threads_port() {
    let kthread = std::fs::read("/proc/2/stat")
        .ok()
        .and_then(|s| portpick::__private::server::parse_stat(&s).ok())
        .is_some_and(|s| s.is_kernel_thread());
    if !kthread {
        eprintln!("skipped: pid 2 is no kernel thread here (a container?)");
        return;
    }
    let ports = free_ports(2);
    let name = unique_name("sandbox-python");
    let server = our_server(&name, &ports);
    // sh is the sandbox's pid 1, Python its pid 2: on the host, kthreadd.
    let code = "import portpicker; print(portpicker.pick_unused_port())";
    let py = python();
    let Some(out) = in_sandbox(
        r#""$0" -c "$1"; true"#,
        &[py.to_str().unwrap(), code],
        &name,
    ) else {
        return;
    };
    let port: u16 = stdout(&out).parse().unwrap();
    assert!(!ports.contains(&port), "a kernel thread got port {port}");
    assert_eq!(stat(&server, "total-allocations"), 0);
    assert_eq!(stat(&server, "denied-pid"), 1);
    server.stop();
}
