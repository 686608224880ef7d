//! Sandboxed clients: what a request from another pid namespace costs next
//! to a host client's, and what the server's namespace lookup costs with
//! thousands of processes on the host. Needs root (`unshare -pf`); says it
//! skipped otherwise.
//!
//! `cargo bench --bench sandbox`. The request figures are measured inside
//! client processes (this binary with `--client N`, on the host and in
//! `unshare -pf [--mount-proc]`), batch after batch in turn, against one
//! server; each prints the median of its requests and its first (a
//! namespace the server has not met: a scan of `/proc`). The lookup
//! figures time the server's seam in this process: a host pid's
//! `/proc/PID/stat`, the uncached scan, and the cached lookup (checked
//! again on each hit). Then the same with `SLEEPERS` more processes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use portpick::__private::pidns;
use portpick::server::{Level, PortServer, ProcessTable, ServerConfig};

/// Extra processes for the crowded host (fewer in a smoke test).
fn sleepers() -> usize {
    if full() {
        5000
    } else {
        20
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--client") {
        let n = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(10);
        return client(n);
    }
    let ok = Command::new("unshare")
        .args(["-pf", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("sandbox: skipped (needs root for `unshare -pf`)");
        return;
    }
    let address = format!("@portpick-bench-sandbox-{}", std::process::id());
    let config = ServerConfig::new(address.parse().expect("address"))
        .ports(15000..=24999)
        .max_ports_per_pid(100_000)
        .log_level(Level::Off);
    let server = PortServer::new(config).start().expect("server");
    let owner = Killed(vec![sandboxed_sleeper()]);
    report("quiet host", &address, &owner);
    let crowd = Killed(spawn_sleepers(sleepers()));
    report(
        &format!("{} more processes", crowd.0.len()),
        &address,
        &owner,
    );
    drop(crowd);
    server.stop();
}

/// `--client N`: N requests for our own pid; prints `first median` in ns.
fn client(n: usize) {
    let address = std::env::var("PORTSERVER_ADDRESS").expect("PORTSERVER_ADDRESS");
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let start = Instant::now();
        let port = portpick::get_port_from_port_server_with_timeout(
            &address,
            None,
            Duration::from_secs(10),
        );
        samples.push(start.elapsed());
        port.expect("a port");
    }
    let first = samples[0];
    println!(
        "{} {}",
        first.as_nanos(),
        quantile(&samples, 0.5).as_nanos()
    );
}

/// Runs a client batch on the host or in a sandbox: (first, median).
fn batch(address: &str, sandbox: &[&str], n: usize) -> (Duration, Duration) {
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = if sandbox.is_empty() {
        Command::new(&exe)
    } else {
        let mut cmd = Command::new("unshare");
        cmd.args(sandbox).arg(&exe);
        cmd
    };
    let out = cmd
        .args(["--client", &n.to_string()])
        .env("PORTSERVER_ADDRESS", address)
        .stderr(Stdio::inherit())
        .output()
        .expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let mut next = || Duration::from_nanos(nums.next().unwrap_or(0));
    (next(), next())
}

/// Request medians (host, own /proc, host /proc), batch by batch, then
/// the lookup seam.
fn report(title: &str, address: &str, owner: &Killed) {
    let n = if full() { 200 } else { 5 };
    let kinds: [&[&str]; 3] = [&[], &["-pf", "--mount-proc"], &["-pf"]];
    let mut figures: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); 3];
    for _ in 0..rounds() {
        for (i, kind) in kinds.iter().enumerate() {
            figures[i].push(batch(address, kind, n));
        }
    }
    let median = |i: usize, first: bool| {
        let s: Vec<Duration> = figures[i]
            .iter()
            .map(|&(f, m)| if first { f } else { m })
            .collect();
        quantile(&s, 0.5)
    };
    let host = median(0, false);
    println!("== {title}: a request, median of batch medians (first request of a batch)");
    for (i, name) in ["host client", "sandbox, own /proc", "sandbox, host /proc"]
        .iter()
        .enumerate()
    {
        let (m, f) = (median(i, false), median(i, true));
        println!(
            "  {name:<22} {m:>10.1?}  {:.2}x host   (first {f:.1?}, {:.2}x host)",
            ratio(m, host),
            ratio(f, host)
        );
    }
    lookups(title, owner);
}

/// The lookup seam: a host pid, an uncached scan, a cached lookup.
fn lookups(title: &str, owner: &Killed) {
    let (host_pid, ns) = owner.sandboxed();
    let table = portpick::__private::server::ProcFs::new();
    let figures = interleaved(
        if full() { 20 } else { 2 },
        &mut [
            &mut || {
                let _ = std::hint::black_box(table.process(host_pid));
            },
            &mut || {
                let _ = std::hint::black_box(pidns::resolve(ns, 1));
            },
            &mut || {
                let _ = std::hint::black_box(table.find_in_namespace(ns, 1));
            },
        ],
    );
    let base = figures[0].median;
    println!("== {title}: the server's lookup of one owner");
    for (figure, name) in
        figures
            .iter()
            .zip(["host pid (stat)", "sandboxed, scan", "sandboxed, cached"])
    {
        println!(
            "  {name:<22} {:>10.1?}  {:.1}x host   [{:.1?} .. {:.1?}]",
            figure.median,
            ratio(figure.median, base),
            figure.min,
            figure.max
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

/// Children killed and reaped on drop.
struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

impl Killed {
    /// The first child's sandboxed process (`unshare`'s child, pid 1
    /// inside): its pid here and its namespace.
    fn sandboxed(&self) -> (u32, u64) {
        use std::os::unix::fs::MetadataExt;
        let unshare = self.0[0].id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = format!("/proc/{unshare}/task/{unshare}/children");
            let children = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                let pid: u32 = pid.parse().expect("pid");
                let ns = std::fs::metadata(format!("/proc/{pid}/ns/pid")).expect("ns");
                return (pid, ns.ino());
            }
            assert!(Instant::now() < deadline, "the sandbox did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A sleep that is pid 1 of its own sandbox (`unshare` runs as our child).
fn sandboxed_sleeper() -> Child {
    Command::new("unshare")
        .args(["-pf", "--mount-proc", "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare")
}

/// Up to `n` more processes (fewer if the system says no).
fn spawn_sleepers(n: usize) -> Vec<Child> {
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        match Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => {
                println!("  stopped at {} sleepers: {e}", children.len());
                break;
            }
        }
    }
    children
}
