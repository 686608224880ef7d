//! A launch storm: N client processes, each with its own live pid, ask a
//! portserver for a port at the same moment (a test runner starting its
//! shards). Every one must get a port, all distinct, none past its timeout;
//! the per-client latency (from the release to the answer) is reported as
//! p50, p99 and max, with the storm's wall time.
//!
//! `cargo bench --bench storm` storms 1,000 clients, 3 rounds; without
//! `--bench` (`cargo test --benches`) 20 clients, 1 round, as a smoke test.
//! The clients are this program again (`PORTPICK_STORM_CHILD`): each prints
//! `ready`, blocks opening a FIFO for reading, and all wake when the driver
//! opens it for writing; each then asks with the crate's client (timeout
//! 5 s) for its own pid and stays alive (its port's owner) until the driver
//! has every answer.
//!
//! `PORTPICK_STORM_TARGETS=name=@addr,name=@addr` storms external servers,
//! round by round in turns (benches/storm.sh runs Python's portserver.py
//! and our example portserver side by side); unset, an embedded server.
//! The driver needs about 2 descriptors per client (`ulimit -n`).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use portpick::server::{Level, PortServer, ServerConfig};

/// What each client allows itself for the whole exchange.
const TIMEOUT: Duration = portpick::DEFAULT_TIMEOUT;

fn main() {
    if let Ok(address) = std::env::var("PORTPICK_STORM_CHILD") {
        let fifo = std::env::var_os("PORTPICK_STORM_FIFO").expect("PORTPICK_STORM_FIFO");
        child(&address, Path::new(&fifo));
        return;
    }
    let (clients, rounds) = if full() { (1000, 3) } else { (20, 1) };
    let mut _embedded = None;
    let targets: Vec<(String, String)> = match std::env::var("PORTPICK_STORM_TARGETS") {
        Ok(spec) => spec
            .split(',')
            .filter_map(|t| t.split_once('='))
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
        Err(_) => {
            let address = format!("@portpick-bench-storm-{}", std::process::id());
            let config = ServerConfig::new(address.parse().expect("address"))
                .ports(15000..=24999)
                .log_level(Level::Error);
            _embedded = Some(PortServer::new(config).start().expect("embedded server"));
            vec![("embedded".to_string(), address)]
        }
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "launch storm: {clients} client processes at once, {rounds} round(s) per server, in turns{}; load average {}",
        if full() { "" } else { " (smoke test: pass --bench)" },
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let exe = std::env::current_exe().expect("current_exe");
    let mut results: Vec<Vec<Storm>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, address)) in targets.iter().enumerate() {
            let s = storm(&exe, address, clients);
            eprintln!(
                "round {} {name}: {} ports ({} distinct), {} failed; p50 {} p99 {} max {} wall {}",
                round + 1,
                s.ports.len(),
                s.distinct(),
                s.failures.len(),
                fmt(s.quantile(0.5)),
                fmt(s.quantile(0.99)),
                fmt(s.quantile(1.0)),
                fmt(s.wall)
            );
            for f in s.failures.iter().take(3) {
                eprintln!("  {f}");
            }
            results[i].push(s);
        }
    }
    let mut broken = false;
    println!(
        "| server | clients | got a port | distinct | past timeout | p50 | p99 | max | wall |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((name, _), storms) in targets.iter().zip(&results) {
        // The median round by p99, reported whole.
        let mut by_p99: Vec<&Storm> = storms.iter().collect();
        by_p99.sort_by_key(|s| s.quantile(0.99));
        let s = by_p99[by_p99.len() / 2];
        let ok = storms
            .iter()
            .all(|s| s.failures.is_empty() && s.distinct() == clients);
        broken |= !ok && !name.starts_with("py");
        let late: usize = storms.iter().map(|s| s.late()).sum();
        println!(
            "| {name} | {clients} | {} | {} | {late} | {} | {} | {} | {} |",
            s.ports.len(),
            s.distinct(),
            fmt(s.quantile(0.5)),
            fmt(s.quantile(0.99)),
            fmt(s.quantile(1.0)),
            fmt(s.wall)
        );
        record(&format!("storm_{name}_p50"), s.quantile(0.5).as_nanos());
        record(&format!("storm_{name}_p99"), s.quantile(0.99).as_nanos());
        record(&format!("storm_{name}_ok"), u8::from(ok));
    }
    if broken {
        eprintln!("a storm lost a client or handed a port out twice");
        std::process::exit(1);
    }
}

/// One storm's answers.
struct Storm {
    ports: Vec<u16>,
    latencies: Vec<Duration>,
    failures: Vec<String>,
    wall: Duration,
}

impl Storm {
    fn distinct(&self) -> usize {
        self.ports.iter().collect::<HashSet<_>>().len()
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        quantile(&self.latencies, q)
    }

    /// Clients that waited past their timeout (as failures or answers).
    fn late(&self) -> usize {
        self.latencies.iter().filter(|&&l| l >= TIMEOUT).count()
    }
}

fn epoch_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The client: ready, wait at the barrier, ask, report, stay alive.
fn child(address: &str, fifo: &Path) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    // Blocks until the driver opens the FIFO for writing: all at once.
    let _barrier = std::fs::File::open(fifo).expect("open the barrier");
    let started = Instant::now();
    let answer = portpick::get_port_from_port_server_with_timeout(address, None, TIMEOUT);
    let took = started.elapsed().as_nanos();
    let done = epoch_nanos();
    let _ = match answer {
        Ok(port) => writeln!(out, "{port} {took} {done}"),
        Err(e) => writeln!(out, "error {took} {done} {e}"),
    };
    let _ = out.flush();
    drop(out);
    // The port's owner lives until the driver has every answer.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

struct Client {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn storm(exe: &Path, address: &str, n: usize) -> Storm {
    let fifo: PathBuf = std::env::temp_dir().join(format!(
        "portpick-storm-{}-{}",
        std::process::id(),
        epoch_nanos()
    ));
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let mut clients: Vec<Client> = (0..n)
        .map(|_| {
            let mut child = Command::new(exe)
                .env("PORTPICK_STORM_CHILD", address)
                .env("PORTPICK_STORM_FIFO", &fifo)
                .env_remove("PORTSERVER_ADDRESS")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a client (ulimit -n: 2 descriptors per client)");
            let out = BufReader::new(child.stdout.take().expect("stdout"));
            Client { child, out }
        })
        .collect();
    let mut line = String::new();
    for c in &mut clients {
        line.clear();
        c.out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
    }
    // Every client is at (or about to reach) the barrier.
    std::thread::sleep(Duration::from_millis(50));
    let released = epoch_nanos();
    let barrier = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open the barrier");
    let mut s = Storm {
        ports: Vec::with_capacity(n),
        latencies: Vec::with_capacity(n),
        failures: Vec::new(),
        wall: Duration::ZERO,
    };
    let mut last_done = released;
    for c in &mut clients {
        line.clear();
        c.out.read_line(&mut line).expect("answer");
        let mut f = line.trim_end().splitn(4, ' ');
        let what = f.next().unwrap_or("");
        let took: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let done: u128 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        last_done = last_done.max(done);
        s.latencies.push(Duration::from_nanos(took));
        match what.parse::<u16>() {
            Ok(port) => s.ports.push(port),
            Err(_) => s.failures.push(line.trim_end().to_string()),
        }
    }
    s.wall = Duration::from_nanos((last_done - released) as u64);
    drop(barrier);
    for mut c in clients {
        drop(c.child.stdin.take());
        let _ = c.child.wait();
    }
    let _ = std::fs::remove_file(&fifo);
    s.latencies.sort();
    s
}
