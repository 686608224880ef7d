//! The pick path next to its floor, measured in the same run.
//!
//! `cargo bench --bench pick`. The pick floor is one dual-stack TCP bind of
//! port 0 and one UDP bind of the port it got: the least a correct "free on
//! TCP and UDP, IPv4 and IPv6" answer costs on a dual-stack kernel. Cases
//! that are compared run interleaved, round by round (see common/mod.rs).

mod common;

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Creates the lock file of every port the kernel hands out for bind(0)
/// (`ip_local_port_range`), as on a host that has used portpick a while.
fn prewarm(dir: &Path) {
    std::fs::create_dir_all(dir).expect("lock dir");
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_string());
    let mut it = range
        .split_whitespace()
        .map(|n| n.parse::<u16>().unwrap_or(0));
    let (lo, hi) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    for port in lo..=hi {
        let path = dir.join(format!("{port}.lock"));
        if !path.exists() {
            std::fs::File::create(path).expect("lock file");
        }
    }
}

/// A claim that needs no file: an abstract unix socket named after the
/// port, released by the kernel when its holder exits (Linux). Measured
/// next to the lock files to show what a claim could cost.
fn abstract_claim(port: u16) -> Option<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("portpick-bench-claim-{}-{port}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?;
    std::os::unix::net::UnixListener::bind_addr(&addr).ok()
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

fn main() {
    let tmp = std::env::temp_dir().join(format!("portpick-bench-{}", std::process::id()));
    banner("portpick pick path (per call)");

    header("pick (per call; compared cases interleaved)");
    let nolock = Picker::new().lock_dir(None::<&str>);
    // As users get it: claims only when PORTPICK_LOCK_DIR asks for them.
    let default = Picker::new();
    let warm_dir = tmp.join("warm");
    if full() {
        prewarm(&warm_dir);
    }
    let warm = Picker::new().lock_dir(Some(&warm_dir));
    let pick_with = |p: &Picker| {
        let port = p.pick_unused_port().expect("a port");
        p.return_port(black_box(port));
    };
    let f = interleaved(
        2000,
        &mut [
            &mut || {
                black_box(floor_pick());
            },
            &mut || pick_with(&nolock),
            &mut || pick_with(&default),
            &mut || pick_with(&warm),
            &mut || {
                let g = warm.pick_guard().expect("a port");
                black_box(g.port());
            },
            &mut || {
                let port = floor_pick();
                black_box(abstract_claim(port));
            },
        ],
    );
    let [floor, nolock_f, default_f, warm_f, guard_f, abstract_f] =
        <[Figure; 6]>::try_from(f).expect("six");
    row(
        "pick_floor",
        "floor: TCP bind [::]:0 + UDP bind of its port",
        &floor,
        "",
    );
    let of_floor = |key: &str, f: &Figure| format!("{} of floor", ratio(key, f, &floor));
    row(
        "pick",
        "pick_unused_port+return_port (default: no claim)",
        &default_f,
        &of_floor("pick", &default_f),
    );
    row(
        "pick_nolock",
        "  same, .lock_dir(None) (no claim, as Python)",
        &nolock_f,
        &of_floor("pick_nolock", &nolock_f),
    );
    row(
        "pick_warm",
        "  same, temp lock dir, lock files exist (warm)",
        &warm_f,
        &of_floor("pick_warm", &warm_f),
    );
    row(
        "guard",
        "pick_guard (warm lock dir, dropped at once)",
        &guard_f,
        &of_floor("guard", &guard_f),
    );

    row(
        "abstract_claim",
        "floor + claim by abstract socket (an alternative)",
        &abstract_f,
        &of_floor("abstract_claim", &abstract_f),
    );

    // A cold claim creates the lock file: a port's first claim on a host.
    let cold = Picker::new().lock_dir(Some(tmp.join("cold")));
    let f = interleaved(
        300,
        &mut [&mut || pick_with(&nolock), &mut || pick_with(&cold)],
    );
    let [nolock_c, cold_f] = <[Figure; 2]>::try_from(f).expect("two");
    row(
        "pick_cold",
        "  same, temp lock dir, lock files new (cold)",
        &cold_f,
        &format!("{} of locks off", ratio("pick_cold", &cold_f, &nolock_c)),
    );
    for (key, what, with, base) in [
        (
            "claim",
            "  claim cost, warm (vs locks off)",
            &warm_f,
            &nolock_f,
        ),
        (
            "claim_cold",
            "  claim cost, cold (vs locks off)",
            &cold_f,
            &nolock_c,
        ),
    ] {
        let claim = with.median.saturating_sub(base.median);
        println!(
            "{what:<W$} {:>9}  {:>19}  {:.0}% of a pick without locks",
            fmt(claim),
            "",
            100.0 * claim.as_secs_f64() / base.median.as_secs_f64()
        );
        record(key, claim.as_nanos());
    }

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

    header("whole process (per run; interleaved)");
    let me = std::process::id().to_string();
    let true_path = which("true");
    let tool = env!("CARGO_BIN_EXE_portpicker");
    let f = interleaved(
        30,
        &mut [&mut || run(&mut Command::new(&true_path)), &mut || {
            run(Command::new(tool).arg(&me).env_remove("PORTSERVER_ADDRESS"))
        }],
    );
    let [true_f, tool_f] = <[Figure; 2]>::try_from(f).expect("two");
    row(
        "spawn_true",
        "floor: spawn and wait for `true`",
        &true_f,
        "",
    );
    row(
        "tool",
        "portpicker $PID (default lock dir)",
        &tool_f,
        &format!("{} of spawning `true`", ratio("tool", &tool_f, &true_f)),
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
