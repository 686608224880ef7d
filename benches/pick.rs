//! The pick path next to its floor, measured in the same run.
//!
//! `cargo bench --bench pick`. The pick floor is one dual-stack TCP bind of
//! port 0 and one UDP bind of the port it got: the least a correct "free on
//! TCP and UDP, IPv4 and IPv6" answer costs on a dual-stack kernel. The
//! tool's floor is a minimal process that binds and prints a port (this
//! bench binary, run again in that mode). Cases that are compared run
//! interleaved, round by round (see common/mod.rs).

mod common;

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use portpick::Picker;

/// The pick floor: `[::]:0` TCP, then UDP on that port; IPv4 without IPv6.
fn floor_pick() -> u16 {
    let tcp = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
        .or_else(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))))
        .expect("bind port 0");
    let local = tcp.local_addr().expect("local address");
    let udp = UdpSocket::bind(local);
    black_box(&udp);
    local.port()
}

/// Python's `is_port_free` binds four sockets: TCP and UDP, IPv4 and IPv6.
fn four_binds(port: u16) -> bool {
    let a = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let b = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok();
    let c = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let d = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok();
    a && b && c && d
}

/// `name` looked up in `PATH` once, so the floor does not pay for the search.
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run(cmd: &mut Command) {
    let ok = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{cmd:?} failed");
}

/// Set in the environment of this binary run as the tool's floor.
const BIND_PRINT_ENV: &str = "PORTPICK_BENCH_BIND_PRINT";

/// The floor of the tool: a process that binds a port and prints it.
fn bind_print() {
    println!("{}", floor_pick());
}

/// Runs `cmd` to completion, timing only that.
fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    run(cmd);
    start.elapsed()
}

/// The `portpicker` binary cargo built for this bench.
const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

/// `portpicker OWNER`, with no portserver and claims as by default.
fn tool_cmd(owner: u32) -> Command {
    let mut c = Command::new(TOOL);
    c.arg(owner.to_string())
        .env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    c
}

fn main() {
    if std::env::var_os(BIND_PRINT_ENV).is_some() {
        return bind_print();
    }
    banner("portpick pick path (per call)");
    pick_vs_floor();
    many_and_blocks();
    is_port_free_vs_four_binds();
    let owner = sleeper();
    whole_process(&owner);
    holder(owner);
}

/// A pick and return, claimed (the default), unclaimed, in never-used claim
/// names, and as a guard, next to the pick floor.
fn pick_vs_floor() {
    header("pick (per call; compared cases interleaved)");
    // As users get it: claims on (Linux), unless PORTPICK_CLAIMS=off.
    let default = Picker::new();
    let off = Picker::new().claims(false);
    let pick_with = |p: &Picker| {
        let port = p.pick_unused_port().expect("a port");
        p.return_port(black_box(port));
    };
    // Claims in names never bound before on this host (a prefix per call):
    // with files, a port's first claim created its lock file; here a name
    // is no state at all, bound or not.
    let n = 2000;
    let fresh_names: Vec<Picker> = (0..iters(n) as usize * (rounds() + 1))
        .map(|i| Picker::new().claims_in(&format!("portpick-bench-{}/{i}/", std::process::id())))
        .collect();
    let mut fresh = fresh_names.iter();
    let f = interleaved(
        n,
        &mut [
            &mut || {
                black_box(floor_pick());
            },
            &mut || pick_with(&off),
            &mut || pick_with(&default),
            &mut || pick_with(fresh.next().expect("enough pickers")),
            &mut || {
                let g = default.pick_guard().expect("a port");
                black_box(g.port());
            },
        ],
    );
    let [floor, off_f, default_f, fresh_f, guard_f] = <[Figure; 5]>::try_from(f).expect("five");
    row(
        "pick_floor",
        "floor: TCP bind [::]:0 + UDP bind of its port",
        &floor,
        "",
    );
    let of_floor = |key: &str, f: &Figure| format!("{} of floor", ratio(key, f, &floor));
    row(
        "pick",
        "pick_unused_port+return_port (default: claimed)",
        &default_f,
        &of_floor("pick", &default_f),
    );
    row(
        "pick_off",
        "  same, .claims(false) (no claim, as Python)",
        &off_f,
        &of_floor("pick_off", &off_f),
    );
    row(
        "pick_fresh",
        "  same, claims in never-used names (\"cold\")",
        &fresh_f,
        &format!(
            "{} of floor, {} of default",
            ratio("pick_fresh", &fresh_f, &floor),
            ratio("fresh_vs_default", &fresh_f, &default_f)
        ),
    );
    row(
        "guard",
        "pick_guard (claimed, dropped at once)",
        &guard_f,
        &of_floor("guard", &guard_f),
    );
    let claim = default_f.median.saturating_sub(off_f.median);
    println!(
        "{:<W$} {:>9}  {:>19}  {:.0}% of a pick without claims",
        "  claim cost (default vs off)",
        fmt(claim),
        "",
        100.0 * claim.as_secs_f64() / off_f.median.as_secs_f64()
    );
    record("claim", claim.as_nanos());
    drop(fresh_names);
}

/// `pick_many(10)` next to ten single picks, and `pick_consecutive(4)` next
/// to the pick floor, all returned at once; default claims, no portserver.
fn many_and_blocks() {
    header("several ports (per call; compared cases interleaved)");
    let picker = Picker::new().portserver(None);
    let give_back = |ports: &[u16]| {
        for &port in ports {
            picker.return_port(black_box(port));
        }
    };
    let f = interleaved(
        300,
        &mut [
            &mut || {
                black_box(floor_pick());
            },
            &mut || {
                let ports: Vec<u16> = (0..10)
                    .map(|_| picker.pick_unused_port().expect("a port"))
                    .collect();
                give_back(&ports);
            },
            &mut || give_back(&picker.pick_many(10).expect("ten ports")),
            &mut || {
                let block = picker.pick_consecutive(4).expect("a block");
                give_back(&block.collect::<Vec<u16>>());
            },
        ],
    );
    let [floor, ten, many, block] = <[Figure; 4]>::try_from(f).expect("four");
    row("pick_floor3", "floor (as above)", &floor, "");
    row("ten_picks", "ten pick_unused_port + returns", &ten, "");
    row(
        "pick_many",
        "pick_many(10) + returns",
        &many,
        &format!("{} of ten picks", ratio("pick_many", &many, &ten)),
    );
    row(
        "pick_consecutive",
        "pick_consecutive(4) + returns",
        &block,
        &format!("{} of floor", ratio("pick_consecutive", &block, &floor)),
    );
}

/// `is_port_free` on a free and a busy port next to Python's four binds, and
/// the bound listener next to the floor.
fn is_port_free_vs_four_binds() {
    header("is_port_free and the bound listener (per call)");
    let free_port = floor_pick();
    let holder = TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0))
        .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .expect("a busy port");
    let busy_port = holder.local_addr().expect("address").port();
    assert!(
        portpick::is_port_free(free_port),
        "{free_port} should be free"
    );
    assert!(
        !portpick::is_port_free(busy_port),
        "{busy_port} should be busy"
    );
    let f = interleaved(
        2000,
        &mut [
            &mut || {
                black_box(floor_pick());
            },
            &mut || {
                black_box(four_binds(free_port));
            },
            &mut || {
                black_box(portpick::is_port_free(free_port));
            },
            &mut || {
                black_box(portpick::is_port_free(busy_port));
            },
            &mut || {
                black_box(portpick::bind_unused_tcp().expect("a listener"));
            },
        ],
    );
    let [floor2, four, free_f, busy_f, listener] = <[Figure; 5]>::try_from(f).expect("five");
    row("pick_floor2", "floor (as above)", &floor2, "");
    row(
        "four_binds",
        "four binds (TCP/UDP x v4/v6), Python's way",
        &four,
        &format!("{} of floor", ratio("four_binds", &four, &floor2)),
    );
    row(
        "is_port_free",
        "is_port_free(free port)",
        &free_f,
        &format!("{} of four binds", ratio("is_port_free", &free_f, &four)),
    );
    row(
        "is_port_busy",
        "is_port_free(busy port)",
        &busy_f,
        &format!("{} of four binds", ratio("is_port_busy", &busy_f, &four)),
    );
    row(
        "bind_unused_tcp",
        "bind_unused_tcp (a bound listener)",
        &listener,
        &format!("{} of floor", ratio("bind_unused_tcp", &listener, &floor2)),
    );
    drop(holder);
}

/// The `portpicker` tool as a whole process (each call starts its holder),
/// with and without other holders running, next to a minimal process that
/// binds and prints a port.
fn whole_process(owner: &Reaper) {
    header("whole process (per run; interleaved)");
    let me = std::env::current_exe().expect("this bench");
    let true_path = which("true");
    let tool = TOOL;
    // One owner for every call, so holders pile up across a round ("warm":
    // the binary's pages are in memory, in use by live holders); before
    // each "cold" call they are killed (untimed), so none runs.
    let runs = iters(30) as usize;
    let mut rounds_of: [Vec<Duration>; 5] = Default::default();
    for round in 0..=rounds() {
        let mut sums = [Duration::ZERO; 5];
        for _ in 0..runs {
            sums[0] += timed(&mut Command::new(&true_path));
            sums[1] += timed(Command::new(&me).env(BIND_PRINT_ENV, "1"));
            sums[2] += timed(&mut tool_cmd(owner.pid()));
            sums[4] += timed(tool_cmd(owner.pid()).env(portpick::CLAIMS_ENV, "off"));
            kill_holders(tool);
            sums[3] += timed(&mut tool_cmd(owner.pid()));
        }
        if round > 0 {
            for (r, s) in rounds_of.iter_mut().zip(sums) {
                r.push(s / runs as u32);
            }
        }
    }
    kill_holders(tool);
    let [true_f, bind_f, warm_f, cold_f, off_f] = rounds_of.map(from_rounds);
    row("spawn_true", "spawn and wait for `true`", &true_f, "");
    row(
        "bind_print",
        "floor: a process that binds and prints a port",
        &bind_f,
        "",
    );
    let of_bind = |key: &str, f: &Figure| format!("{} of floor", ratio(key, f, &bind_f));
    row(
        "tool",
        "portpicker $PID (holders of earlier calls run)",
        &warm_f,
        &of_bind("tool", &warm_f),
    );
    row(
        "tool_first",
        "portpicker $PID, no holder running",
        &cold_f,
        &of_bind("tool_first", &cold_f),
    );
    row(
        "tool_off",
        "portpicker $PID, PORTPICK_CLAIMS=off (no holder)",
        &off_f,
        &of_bind("tool_off", &off_f),
    );
}

/// A holder's cost: memory (RSS, and PSS: its share of pages that holders
/// share), idle wake-ups, and how soon it leaves after its owner dies.
fn holder(owner: Reaper) {
    let tool = TOOL;
    header("a holder (one per call whose PID lives)");
    for _ in 0..100 {
        run(&mut tool_cmd(owner.pid()));
    }
    let holders = our_holders(tool);
    let one = *holders.first().expect("a holder runs");
    let rss = status_field(one, "VmRSS").unwrap_or(0);
    let pss: u64 = holders
        .iter()
        .map(|&pid| proc_field(pid, "smaps_rollup", "Pss").unwrap_or(0))
        .sum::<u64>()
        / holders.len() as u64;
    println!("{:<W$} {rss:>6} KiB", "holder RSS");
    println!(
        "{:<W$} {pss:>6} KiB",
        "holder PSS, mean of 100 live holders"
    );
    record("holder_rss_kib", rss);
    record("holder_pss_kib", pss);
    let switches = || {
        status_field(one, "voluntary_ctxt_switches").unwrap_or(0)
            + status_field(one, "nonvoluntary_ctxt_switches").unwrap_or(0)
    };
    let window = if full() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    let before = switches();
    std::thread::sleep(window);
    let wakeups = (switches() - before) as f64 / window.as_secs_f64();
    println!("{:<W$} {wakeups:>6.1} /s", "holder wake-ups when idle");
    record("holder_wakeups", format!("{wakeups:.1}"));
    drop(owner);
    let died = Instant::now();
    while !our_holders(tool).is_empty() && died.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let gone = died.elapsed();
    println!(
        "{:<W$} {:>9}",
        "100 holders gone after their owner's death",
        fmt(gone)
    );
    record("holder_exit", gone.as_nanos());
}
