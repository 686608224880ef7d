//! The portserver: round trips from a Rust client over the unix socket,
//! next to a floor measured in the same run.
//!
//! `cargo bench --manifest-path tests/kit/Cargo.toml --bench server`. The
//! server floor is a one-thread `UnixListener` loop that reads the pid,
//! reads `/proc/PID/stat`, does the pick floor's two binds and writes the
//! port: the least a correct server does per request. Compared cases run
//! interleaved (see benches/common/mod.rs).
//!
//! `PORTPICK_BENCH_SERVER=@addr` measures an external server instead
//! (benches/compare.sh points it at Python's portserver.py and at our
//! example binary); with `PORTPICK_BENCH_NOPORT=1` it then fills the pool
//! and times "no port", and with `PORTPICK_BENCH_SERVER_PID=N` it reads the
//! server's peak RSS.

#[path = "../../../benches/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use portpick::__private::fakes::{FakeProber, FakeProcesses};
use portpick::server::{Level, PortServer, ServerConfig, ServerHandle};
use portpick::PortServerAddress;

/// Pool size for every server here, as Python's default pool.
const POOL: std::ops::RangeInclusive<u16> = 15000..=24999;
/// The pool of the isolated servers (fake prober: nothing is bound).
const FAKE_POOL: std::ops::RangeInclusive<u16> = 30000..=39999;
/// Fake pids: far above real ones on this host, below `PID_MAX`.
const FAKE_PID: u32 = 3_000_000;

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "@portpick-bench-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sockaddr(address: &str) -> UnixAddr {
    let a: PortServerAddress = address.parse().expect("address");
    a.to_socket_addr().expect("socket address")
}

/// One request, the whole answer: what every client does.
fn round_trip(addr: &UnixAddr, pid: u32) -> Option<u16> {
    let mut s = UnixStream::connect_addr(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(format!("{pid}\n").as_bytes()).expect("write");
    let mut reply = Vec::with_capacity(8);
    let _ = s.read_to_end(&mut reply);
    std::str::from_utf8(&reply).ok()?.trim().parse().ok()
}

fn floor_pick() -> u16 {
    let tcp = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
        .expect("bind");
    let local = tcp.local_addr().expect("addr");
    let udp = UdpSocket::bind(local);
    black_box(&udp);
    local.port()
}

/// The floor server: one thread, the essential work, nothing else.
fn floor_server(address: &str) {
    let listener = UnixListener::bind_addr(&sockaddr(address)).expect("bind floor");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 32];
            let mut len = 0;
            while len < buf.len() {
                match s.read(&mut buf[len..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].contains(&b'\n') {
                    break;
                }
            }
            let pid = std::str::from_utf8(&buf[..len])
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .unwrap_or(0);
            if std::fs::read(format!("/proc/{pid}/stat")).is_err() {
                continue;
            }
            let port = floor_pick();
            let _ = s.write_all(format!("{port}\n").as_bytes());
        }
    });
}

fn config(address: &str, ports: impl IntoIterator<Item = u16>) -> ServerConfig {
    ServerConfig::new(address.parse().expect("address"))
        .ports(ports)
        .max_ports_per_pid(0)
        .log_level(Level::Error)
}

/// Our server with the real prober and `/proc`, on `ports`, no quota.
fn real_server(ports: &[u16]) -> (ServerHandle, UnixAddr) {
    let address = unique("ours");
    let server = PortServer::new(config(&address, ports.iter().copied()))
        .start()
        .expect("start the server");
    (server, sockaddr(&address))
}

/// Our server with a fake prober (all free) and a fake process table.
fn fake_server() -> (ServerHandle, UnixAddr, Arc<FakeProcesses>) {
    let address = unique("fake");
    // Every pid runs (start time 1) until ended: no `/proc`, and an owner
    // can die at a chosen moment.
    let table = Arc::new(FakeProcesses::everyone(1));
    let server = PortServer::new(config(&address, FAKE_POOL))
        .prober(FakeProber::new())
        .process_table(Arc::clone(&table))
        .start()
        .expect("start the server");
    (server, sockaddr(&address), table)
}

/// Allocates for `pids` in turn until `total` ports are held or the server
/// says no port. Returns how many it got.
fn fill(addr: &UnixAddr, pids: &[u32], total: usize) -> usize {
    let mut got = 0;
    while got < total {
        if round_trip(addr, pids[got % pids.len()]).is_none() {
            break;
        }
        got += 1;
    }
    got
}

/// Runs `f` and returns what it returned with the threads it started
/// (task ids), so their CPU time can be read later.
fn spawned<T>(f: impl FnOnce() -> T) -> (T, Vec<u32>) {
    let before = task_ids();
    let out = f();
    let after = task_ids();
    (out, after.difference(&before).copied().collect())
}

fn task_ids() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time the kernel charged to these threads (`schedstat`, in ns).
fn cpu_time(tids: &[u32]) -> Duration {
    let ns: u64 = tids
        .iter()
        .filter_map(|t| {
            let s = std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    Duration::from_nanos(ns)
}

/// CPU time of several servers' threads over an interleaved measurement.
struct Cpu<'a> {
    servers: Vec<(&'a [u32], Duration)>,
}

impl<'a> Cpu<'a> {
    fn start(servers: &[&'a Vec<u32>]) -> Self {
        Cpu {
            servers: servers
                .iter()
                .map(|t| (t.as_slice(), cpu_time(t)))
                .collect(),
        }
    }

    /// Per request, when each server answered `n` requests a round.
    fn per_call(self, n: u32) -> Vec<Duration> {
        let calls = (rounds() as u32 + 1) * iters(n);
        self.servers
            .into_iter()
            .map(|(t, start)| cpu_time(t).saturating_sub(start) / calls)
            .collect()
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The pool ports that are free now (a busy one would only be skipped, but
/// "10,000 held" should mean what it says as far as it can).
fn free_pool() -> Vec<u16> {
    POOL.filter(|&p| portpick::is_port_free(p)).collect()
}

/// Measures a server that someone else started (Python's, say).
fn external(address: &str) {
    let addr = sockaddr(address);
    header(&format!("external portserver at {address}"));
    let owner = sleeper();
    let alloc = measure(80, || {
        assert!(round_trip(&addr, owner.pid()).is_some(), "no port");
    });
    row("ext_alloc", "allocation round trip", &alloc, "");
    let wants_noport = ["PORTPICK_BENCH_NOPORT", "PORTPICK_BENCH_FILL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if wants_noport {
        let owners: Vec<Reaper> = (0..100).map(|_| sleeper()).collect();
        let pids: Vec<u32> = owners.iter().map(Reaper::pid).collect();
        let start = Instant::now();
        let held = fill(&addr, &pids, 20_000) + (alloc.rounds.len() + 1) * iters(80) as usize;
        println!(
            "{:<W$} {:>9}  (held now: {held})",
            "filling the pool (100 live owners)",
            fmt(start.elapsed())
        );
        let f = measure(3, || {
            assert!(round_trip(&addr, pids[0]).is_none(), "pool not full");
        });
        row(
            "ext_noport",
            "\"no port\", pool full",
            &f,
            &format!("{:.0}x an allocation", ratio_of(&f, &alloc)),
        );
        if let Ok(pid) = std::env::var("PORTPICK_BENCH_SERVER_PID") {
            if let Some(kib) = pid.parse().ok().and_then(vm_hwm_kib) {
                println!("{:<W$} {:>6} KiB", "peak RSS (VmHWM), pool full", kib);
                record("ext_rss_kib", kib);
            }
        }
    }
}

fn main() {
    if let Ok(address) = std::env::var("PORTPICK_BENCH_SERVER") {
        external(&address);
        return;
    }
    banner("portpick portserver (Rust client over the unix socket)");
    let ports = free_pool();
    allocation_vs_floor(&ports);
    no_port_with_a_full_pool(&ports);
    isolated_server();
    owner_death();
    parallel_clients(&ports);
    peak_memory();
}

/// An allocation round trip to our server next to the floor server, with
/// the CPU each spends per request.
fn allocation_vs_floor(ports: &[u16]) {
    header("real server (binds, /proc): per request, interleaved");
    let (floor_addr, floor_tids) = spawned(|| {
        let address = unique("floor");
        floor_server(&address);
        sockaddr(&address)
    });
    let ((_ours, ours), ours_tids) = spawned(|| real_server(ports));
    let owner = sleeper();
    let cpu = Cpu::start(&[&floor_tids, &ours_tids]);
    let f = interleaved(
        300,
        &mut [
            &mut || {
                assert!(round_trip(&floor_addr, owner.pid()).is_some());
            },
            &mut || {
                assert!(round_trip(&ours, owner.pid()).is_some(), "no port");
            },
        ],
    );
    let cpu = cpu.per_call(300);
    let [floor, alloc] = <[Figure; 2]>::try_from(f).expect("two");
    row(
        "server_floor",
        "floor: 1-thread server, /proc read + 2 binds",
        &floor,
        &format!("server CPU {}/request", fmt(cpu[0])),
    );
    row(
        "alloc",
        "allocation round trip",
        &alloc,
        &format!(
            "{} of floor; server CPU {}/request ({:.2}x)",
            ratio("alloc", &alloc, &floor),
            fmt(cpu[1]),
            cpu[1].as_secs_f64() / cpu[0].as_secs_f64()
        ),
    );
    record("cpu_floor", cpu[0].as_nanos());
    record("cpu_alloc", cpu[1].as_nanos());
}

/// "No port" from a pool whose 10,000 ports 100 live owners hold, next to
/// an allocation: the O(1) claim.
fn no_port_with_a_full_pool(ports: &[u16]) {
    let ((_ours, ours), ours_tids) = spawned(|| real_server(ports));
    let owner = sleeper();
    // A second server, every port held by 100 live owners.
    let ((_full, full_addr), full_tids) = spawned(|| real_server(ports));
    let owners: Vec<Reaper> = (0..100).map(|_| sleeper()).collect();
    let pids: Vec<u32> = owners.iter().map(Reaper::pid).collect();
    let held = fill(&full_addr, &pids, ports.len());
    assert!(
        round_trip(&full_addr, pids[0]).is_none(),
        "pool should be full"
    );
    let cpu = Cpu::start(&[&ours_tids, &full_tids]);
    let f = interleaved(
        300,
        &mut [
            &mut || {
                assert!(round_trip(&ours, owner.pid()).is_some(), "no port");
            },
            &mut || {
                assert!(round_trip(&full_addr, pids[1]).is_none(), "a port");
            },
        ],
    );
    let cpu = cpu.per_call(300);
    let [alloc2, noport] = <[Figure; 2]>::try_from(f).expect("two");
    row("alloc2", "allocation round trip (own server)", &alloc2, "");
    row(
        "noport",
        &format!("\"no port\", {held} held by 100 live owners"),
        &noport,
        &format!(
            "{} of allocation; server CPU {}/request (alloc: {})",
            ratio("noport", &noport, &alloc2),
            fmt(cpu[1]),
            fmt(cpu[0])
        ),
    );
    drop((_ours, _full, owners, owner));
}

/// The server alone: a prober that says every port is free and a fake
/// process table, so no bind or `/proc` read is timed.
fn isolated_server() {
    header("isolated server (prober says all free, fake process table)");
    let (_a, fake_alloc_addr, _t) = fake_server();
    let (_b, fake_full, _t2) = fake_server();
    let fake_pids: Vec<u32> = (0..100).map(|i| FAKE_PID + 1 + i).collect();
    let fheld = fill(&fake_full, &fake_pids, 10_000);
    let f = interleaved(
        400,
        &mut [
            &mut || {
                assert!(round_trip(&fake_alloc_addr, FAKE_PID).is_some());
            },
            &mut || {
                assert!(round_trip(&fake_full, FAKE_PID).is_none());
            },
        ],
    );
    let [falloc, fnoport] = <[Figure; 2]>::try_from(f).expect("two");
    row("fake_alloc", "allocation round trip", &falloc, "");
    row(
        "fake_noport",
        &format!("\"no port\", {fheld} held by 100 owners"),
        &fnoport,
        &format!("{} of allocation", ratio("fake_noport", &fnoport, &falloc)),
    );
    drop((_a, _b));
}

/// One fresh server per sample: an allocation with everyone alive, then
/// right after the owner of ~100 ports died; and with the pool full.
fn owner_death() {
    let fake_pids: Vec<u32> = (0..100).map(|i| FAKE_PID + 1 + i).collect();
    let samples = if full() { 9 } else { 1 };
    let (mut before, mut after, mut full_before, mut full_after) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut answers = Vec::new();
    for _ in 0..samples {
        // 9,990 of 10,000 held by 100 owners.
        let (_s, addr, table) = fake_server();
        fill(&addr, &fake_pids, 9_990);
        let t = Instant::now();
        assert!(round_trip(&addr, FAKE_PID).is_some());
        before.push(t.elapsed());
        table.end(fake_pids[37]);
        let t = Instant::now();
        assert!(round_trip(&addr, FAKE_PID).is_some());
        after.push(t.elapsed());
        drop(_s);

        // All 10,000 held: the dead owner's ports are the only way out.
        let (_s, addr, table) = fake_server();
        fill(&addr, &fake_pids, 10_000);
        let t = Instant::now();
        assert!(round_trip(&addr, FAKE_PID).is_none());
        full_before.push(t.elapsed());
        table.end(fake_pids[37]);
        let t = Instant::now();
        let mut n = 1;
        while round_trip(&addr, FAKE_PID).is_none() {
            n += 1;
            assert!(t.elapsed() < Duration::from_secs(10), "never reclaimed");
        }
        full_after.push(t.elapsed());
        answers.push(n);
    }
    let (before, after) = (from_samples(before), from_samples(after));
    let (full_before, full_after) = (from_samples(full_before), from_samples(full_after));
    row(
        "died_before",
        "one allocation, 9,990 held by 100 live owners",
        &before,
        "",
    );
    row(
        "died",
        "  the same, right after a 100-port owner died",
        &after,
        &format!("{} of allocation", ratio("died", &after, &before)),
    );
    row(
        "died_full_before",
        "\"no port\", 10,000 held by 100 live owners",
        &full_before,
        "",
    );
    answers.sort();
    row(
        "died_full",
        "  first port after an owner of 100 died",
        &full_after,
        &format!(
            "{:.2}x of allocation; {} request(s)",
            ratio_of(&full_after, &before),
            answers[answers.len() / 2]
        ),
    );
    record(
        "ratio_died_full",
        format!("{:.3}", ratio_of(&full_after, &before)),
    );
}

/// Allocations per second with 1 to 32 client threads.
fn parallel_clients(ports: &[u16]) {
    header("parallel clients (allocations/s, real server, fresh each)");
    let mut single = 0.0;
    for threads in [1usize, 2, 8, 32] {
        let ((server, addr), tids) = spawned(|| real_server(ports));
        let owners: Vec<Reaper> = (0..threads).map(|_| sleeper()).collect();
        let cpu_before = cpu_time(&tids);
        let total = if full() { 3200 } else { 64 };
        let per_thread = total / threads;
        let mut rates = Vec::new();
        // Three runs of per_thread each: 9,600 ports at most from 10,000.
        for _ in 0..3 {
            let start = Instant::now();
            std::thread::scope(|s| {
                for o in &owners {
                    let (addr, pid) = (&addr, o.pid());
                    s.spawn(move || {
                        for _ in 0..per_thread {
                            black_box(round_trip(addr, pid));
                        }
                    });
                }
            });
            rates.push((per_thread * threads) as f64 / start.elapsed().as_secs_f64());
        }
        let cpu = cpu_time(&tids).saturating_sub(cpu_before) / (3 * per_thread * threads) as u32;
        rates.sort_by(f64::total_cmp);
        let rate = rates[1];
        if threads == 1 {
            single = rate;
        }
        println!(
            "{:<W$} {:>9.0}  {:>19}  {:.2}x of 1 client; server CPU {}/allocation",
            format!("{threads} client thread(s)"),
            rate,
            format!("{:.0}..{:.0}", rates[0], rates[2]),
            rate / single,
            fmt(cpu)
        );
        record(&format!("par{threads}"), format!("{rate:.0}"));
        drop(server);
    }
}

/// Peak RSS of the example binary with a full 10,000-port pool.
fn peak_memory() {
    header("memory: example portserver binary, 10,000-port pool");
    let exe = std::env::current_exe().expect("exe");
    let example = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples/portserver"));
    match example.filter(|p| p.exists()) {
        None => {
            println!("(run `cargo build --release --example portserver` first for the RSS figure)")
        }
        Some(path) => {
            let address = unique("rss");
            let child = Reaper(
                std::process::Command::new(path)
                    .arg(format!("--portserver_address={address}"))
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn portserver"),
            );
            let addr = sockaddr(&address);
            let deadline = Instant::now() + Duration::from_secs(10);
            while UnixStream::connect_addr(&addr).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let before = vm_hwm_kib(child.pid()).unwrap_or(0);
            // The default quota is 1,000 per pid: 10 owners fill the pool.
            let owners: Vec<Reaper> = (0..10).map(|_| sleeper()).collect();
            let pids: Vec<u32> = owners.iter().map(Reaper::pid).collect();
            let n = if full() { 10_000 } else { 100 };
            let held = fill(&addr, &pids, n);
            let kib = vm_hwm_kib(child.pid()).unwrap_or(0);
            println!(
                "{:<W$} {:>6} KiB  (at start: {before} KiB)",
                format!("peak RSS (VmHWM), {held} held by 10 owners"),
                kib
            );
            record("rss_kib", kib);
        }
    }
}
