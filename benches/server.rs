//! The portserver: round trips from a Rust client over the unix socket,
//! next to a floor measured in the same run.
//!
//! `cargo bench --bench server`. The server floor is a one-thread
//! `UnixListener` loop that reads the pid, reads `/proc/PID/stat`, does the
//! pick floor's two binds and writes the port: the least a correct server
//! does per request. `PORTPICK_BENCH_SERVER=@addr` measures an external
//! server instead (benches/compare.sh points it at Python's portserver).

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::*;
use portpick::server::{Level, PortServer, ServerConfig, ServerHandle};
use portpick::PortServerAddress;

const POOL: std::ops::RangeInclusive<u16> = 15000..=24999;

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
        .or_else(|_| TcpListener::bind("0.0.0.0:0"))
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
            let stat = std::fs::read(format!("/proc/{pid}/stat"));
            if stat.is_err() {
                continue;
            }
            let port = floor_pick();
            let _ = s.write_all(format!("{port}\n").as_bytes());
        }
    });
}

fn our_server(address: &str, quota: usize) -> ServerHandle {
    let config = ServerConfig::new(address.parse().expect("address"))
        .ports(POOL)
        .max_ports_per_pid(quota)
        .log_level(Level::Error);
    PortServer::new(config).start().expect("start the server")
}

/// Allocation round trips: `ROUNDS` rounds of `n`, for a live owner.
fn allocations(addr: &UnixAddr, n: u32) -> Figure {
    let owner = sleeper();
    let pid = owner.0.id();
    measure(n, || {
        black_box(round_trip(addr, pid));
    })
}

/// Fills a server with `total` ports over `owners` live processes.
fn fill(addr: &UnixAddr, owners: &[Reaper], total: usize) -> usize {
    let mut got = 0;
    for i in 0..total {
        if round_trip(addr, owners[i % owners.len()].0.id()).is_some() {
            got += 1;
        }
    }
    got
}

fn no_port(addr: &UnixAddr, n: u32, pid: u32) -> Figure {
    measure(n, || {
        let got = round_trip(addr, pid);
        assert!(got.is_none(), "the pool was meant to be full");
    })
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Measures a server that someone else started (Python's, say).
fn external(address: &str) {
    let addr = sockaddr(address);
    header(&format!("external portserver at {address}"));
    let alloc = allocations(&addr, 100);
    row("ext_alloc", "allocation round trip", alloc, "");
    if std::env::var_os("PORTPICK_BENCH_FILL").is_some() {
        let owners: Vec<Reaper> = (0..100).map(|_| sleeper()).collect();
        let held = fill(&addr, &owners, 10_000);
        let f = no_port(&addr, 3, owners[0].0.id());
        row(
            "ext_noport",
            &format!("\"no port\", {held} ports held"),
            f,
            &format!("{} of an allocation", ratio(f, alloc)),
        );
        if let Ok(pid) = std::env::var("PORTPICK_BENCH_SERVER_PID") {
            if let Some(kib) = pid.parse().ok().and_then(vm_hwm_kib) {
                println!("{:<52} {:>7} KiB", "peak RSS (VmHWM), pool full", kib);
                eprintln!("BENCH ext_rss_kib {kib}");
            }
        }
    }
}

fn main() {
    if let Ok(address) = std::env::var("PORTPICK_BENCH_SERVER") {
        external(&address);
        return;
    }
    header("portserver (per request, Rust client over the unix socket)");

    let floor_addr = unique("floor");
    floor_server(&floor_addr);
    let floor = allocations(&sockaddr(&floor_addr), 300);
    row(
        "server_floor",
        "floor: 1-thread server, /proc read + 2 binds",
        floor,
        "",
    );

    let address = unique("ours");
    let server = our_server(&address, 0);
    let addr = sockaddr(&address);
    let alloc = allocations(&addr, 300);
    row(
        "alloc",
        "allocation round trip",
        alloc,
        &format!("{} of floor", ratio(alloc, floor)),
    );
    drop(server);

    // 10,000 ports, every one held by 100 live owners.
    let address = unique("full");
    let server = our_server(&address, 0);
    let addr = sockaddr(&address);
    let owners: Vec<Reaper> = (0..100).map(|_| sleeper()).collect();
    let held = fill(&addr, &owners, 10_000);
    let full = no_port(&addr, 300, owners[0].0.id());
    row(
        "noport",
        &format!("\"no port\", {held} of 10,000 held by 100 owners"),
        full,
        &format!("{} of an allocation", ratio(full, alloc)),
    );
    drop(server);

    // 9,990 held by 100 owners; one owner dies; the next allocations.
    let address = unique("died");
    let server = our_server(&address, 0);
    let addr = sockaddr(&address);
    let mut owners: Vec<Reaper> = (0..100).map(|_| sleeper()).collect();
    fill(&addr, &owners, 9_990);
    let asker = sleeper();
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        drop(owners.pop()); // kill -9 and reap: gone at once
        for _ in 0..20 {
            let start = Instant::now();
            black_box(round_trip(&addr, asker.0.id()));
            samples.push(start.elapsed());
        }
    }
    let (p50, p99) = from_samples(samples);
    let died = Figure {
        median: p50,
        min: p50,
        max: p99,
    };
    println!(
        "{:<52} {:>10}  (p99 {})  {} of an allocation",
        "allocation after a 100-port owner died",
        fmt(p50),
        fmt(p99),
        ratio(died, alloc)
    );
    eprintln!("BENCH died {}", p50.as_nanos());
    drop(server);

    header("parallel clients (allocations per second, one fresh server each)");
    let mut single = 0.0;
    for threads in [1usize, 2, 8, 32] {
        let address = unique("par");
        let server = our_server(&address, 0);
        let addr = sockaddr(&address);
        let owners: Vec<Reaper> = (0..threads).map(|_| sleeper()).collect();
        let per_thread = 3200 / threads;
        let start = Instant::now();
        std::thread::scope(|s| {
            for o in &owners {
                let (addr, pid) = (&addr, o.0.id());
                s.spawn(move || {
                    for _ in 0..per_thread {
                        black_box(round_trip(addr, pid));
                    }
                });
            }
        });
        let rate = (per_thread * threads) as f64 / start.elapsed().as_secs_f64();
        if threads == 1 {
            single = rate;
        }
        println!(
            "{:<52} {:>10.0}  {:.2}x of 1 client",
            format!("{threads} client thread(s)"),
            rate,
            rate / single
        );
        eprintln!("BENCH par{threads} {rate:.0}");
        drop(server);
    }

    header("memory");
    let exe = std::env::current_exe().expect("exe");
    let example = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples/portserver"));
    match example.filter(|p| p.exists()) {
        None => println!("(build `cargo build --release --example portserver` for the RSS figure)"),
        Some(path) => {
            let address = unique("rss");
            let mut child = Reaper(
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
            // The default quota is 1,000 per pid: 10 owners fill the pool.
            let owners: Vec<Reaper> = (0..10).map(|_| sleeper()).collect();
            let held = fill(&addr, &owners, 10_000);
            let pid = child.0.id();
            let kib = vm_hwm_kib(pid).unwrap_or(0);
            println!(
                "{:<52} {:>7} KiB",
                format!("peak RSS (VmHWM), example binary, {held} held"),
                kib
            );
            eprintln!("BENCH rss_kib {kib}");
            let _ = child.0.kill();
        }
    }
}
