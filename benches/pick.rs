//! The pick path next to its floor, measured in the same run.
//!
//! `cargo bench --bench pick`. The pick floor is one dual-stack TCP bind of
//! port 0 and one UDP bind of the port it got: the least a correct "free on
//! TCP and UDP, IPv4 and IPv6" answer costs on a dual-stack kernel.

mod common;

use std::hint::black_box;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};

use common::*;
use portpick::Picker;

fn floor_pick() -> u16 {
    let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
    let tcp = match TcpListener::bind(any) {
        Ok(l) => l,
        // No IPv6: the floor is the IPv4 pair.
        Err(_) => TcpListener::bind("0.0.0.0:0").expect("bind"),
    };
    let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let udp = UdpSocket::bind(SocketAddr::new(tcp.local_addr().unwrap().ip(), port));
    black_box(&udp);
    port
}

/// Python's `is_port_free` binds four sockets: TCP and UDP, IPv4 and IPv6.
fn floor_four_binds(port: u16) -> bool {
    let a = TcpListener::bind(("0.0.0.0", port)).is_ok();
    let b = TcpListener::bind(("::", port)).is_ok();
    let c = UdpSocket::bind(("0.0.0.0", port)).is_ok();
    let d = UdpSocket::bind(("::", port)).is_ok();
    a && b && c && d
}

/// Creates the lock file of every port the kernel hands out for bind(0)
/// (`ip_local_port_range`), as a host that has used portpick for a while has.
fn prewarm(dir: &std::path::Path) {
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

fn main() {
    let lock_dir = std::env::temp_dir().join(format!("portpick-bench-{}", std::process::id()));
    header("pick path (per call)");

    let floor = measure(2000, || {
        black_box(floor_pick());
    });
    row(
        "pick_floor",
        "floor: TCP bind [::]:0 + UDP bind of its port",
        floor,
        "",
    );

    let plain = Picker::new().lock_dir(None::<&str>);
    let pick_nolock = measure(2000, || {
        let p = plain.pick_unused_port().expect("a port");
        plain.return_port(black_box(p));
    });
    row(
        "pick_nolock",
        "pick_unused_port + return_port, locks off",
        pick_nolock,
        &format!("{} of floor", ratio(pick_nolock, floor)),
    );

    // Lock files are created on a port's first claim on a host and reused
    // ever after, so a claim costs either a file creation (cold) or an
    // open + flock + close of an existing file (warm). Measure both.
    let locked = Picker::new().lock_dir(Some(&lock_dir));
    let pick_cold = measure(300, || {
        let p = locked.pick_unused_port().expect("a port");
        locked.return_port(black_box(p));
    });
    row(
        "pick_cold",
        "pick + return, locks on, lock files new (cold)",
        pick_cold,
        &format!("{} of floor", ratio(pick_cold, floor)),
    );
    let warm_dir = lock_dir.join("warm");
    prewarm(&warm_dir);
    let warm = Picker::new().lock_dir(Some(&warm_dir));
    let pick_lock = measure(2000, || {
        let p = warm.pick_unused_port().expect("a port");
        warm.return_port(black_box(p));
    });
    row(
        "pick",
        "pick + return, locks on, lock files exist (default)",
        pick_lock,
        &format!("{} of floor", ratio(pick_lock, floor)),
    );
    for (key, what, with) in [
        (
            "claim",
            "  claim, warm (difference to locks off)",
            pick_lock,
        ),
        (
            "claim_cold",
            "  claim, cold (difference to locks off)",
            pick_cold,
        ),
    ] {
        let claim = with.median.saturating_sub(pick_nolock.median);
        println!(
            "{what:<52} {:>10}  {:.0}% of a pick without locks",
            fmt(claim),
            100.0 * claim.as_secs_f64() / pick_nolock.median.as_secs_f64()
        );
        eprintln!("BENCH {key} {}", claim.as_nanos());
    }

    let guard = measure(2000, || {
        let g = warm.pick_guard().expect("a port");
        black_box(g.port());
    });
    row("guard", "pick_guard (dropped at once)", guard, "");

    let free_port = floor_pick();
    let four = measure(2000, || {
        black_box(floor_four_binds(free_port));
    });
    row(
        "four_binds",
        "four binds (TCP/UDP x v4/v6), Python's way",
        four,
        "",
    );
    let is_free = measure(2000, || {
        black_box(portpick::is_port_free(free_port));
    });
    row(
        "is_port_free",
        "is_port_free(free port)",
        is_free,
        &format!("{} of four binds", ratio(is_free, four)),
    );
    let holder = TcpListener::bind(("::", 0)).or_else(|_| TcpListener::bind("0.0.0.0:0"));
    let busy_port = holder
        .as_ref()
        .map(|l| l.local_addr().unwrap().port())
        .unwrap_or(0);
    let is_busy = measure(2000, || {
        black_box(portpick::is_port_free(busy_port));
    });
    row("is_port_busy", "is_port_free(busy port)", is_busy, "");

    let listener = measure(2000, || {
        black_box(portpick::bind_unused_tcp().expect("a listener"));
    });
    row(
        "bind_unused_tcp",
        "bind_unused_tcp (a bound listener)",
        listener,
        "",
    );

    header("whole process (per run)");
    let spawn = |cmd: &mut Command| {
        let ok = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "{cmd:?} failed");
    };
    let me = std::process::id().to_string();
    let true_floor = measure(40, || spawn(&mut Command::new("true")));
    row(
        "spawn_true",
        "floor: spawn and wait for `true`",
        true_floor,
        "",
    );
    let tool = measure(40, || {
        spawn(
            Command::new(env!("CARGO_BIN_EXE_portpicker"))
                .arg(&me)
                .env_remove("PORTSERVER_ADDRESS")
                .env("PORTPICK_LOCK_DIR", &lock_dir),
        )
    });
    row(
        "tool",
        "portpicker $PID",
        tool,
        &format!("{} of spawning `true`", ratio(tool, true_floor)),
    );
    let _ = std::fs::remove_dir_all(&lock_dir);
}
