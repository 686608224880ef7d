//! The tool's pick options as processes: `--count`, `--consecutive`,
//! `--range`, `--exclude`, `--address`, with PID (the claims held for its
//! life by the call's holder) and BIND_TIMEOUT (every port bound), the
//! portserver's part in `--count`, and bad values.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::process::{Command, Output};

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

fn tool(args: &[String]) -> Output {
    run_bounded(tool_command(TOOL).args(args))
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn range_arg(range: &RangeInclusive<u16>) -> String {
    format!("{}-{}", range.start(), range.end())
}

/// The ports printed, one per line, in order; the call must have succeeded.
fn ports_of(out: &Output) -> Vec<u16> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(|l| l.parse().unwrap()).collect()
}

fn distinct(ports: &[u16]) -> BTreeSet<u16> {
    let set: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(set.len(), ports.len(), "{ports:?}");
    set
}

#[test]
fn count_gives_distinct_ports_claimed_for_pids_life() {
    let _turn = claims_turn();
    let block = pool_block(6);
    let range = range_arg(&block);
    let (first_owner, second_owner) = (sleeper(), sleeper());
    let pid = first_owner.pid().to_string();
    let first = distinct(&ports_of(&tool(&words(&[
        &pid, "--count", "4", "--range", &range,
    ]))));
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|p| block.contains(p) && claimed(*p)));
    assert_eq!(holders_for(first_owner.pid()), 1);
    // While the first owner lives, another call gets the other two only.
    let pid2 = second_owner.pid().to_string();
    let second = distinct(&ports_of(&tool(&words(&[
        &pid2,
        "--range",
        &range,
        "--count=2",
    ]))));
    assert!(second
        .iter()
        .all(|p| block.contains(p) && !first.contains(p)));
    // The range is used up: the library's error, naming the range.
    let out = tool(&words(&[&dead_pid().to_string(), "--range", &range]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no free port found in {range}")),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The first owner's death frees its ports for others.
    drop(first_owner);
    assert!(eventually(|| first.iter().all(|p| !claimed(*p))));
    let exclude: Vec<String> = second.iter().map(u16::to_string).collect();
    let again = ports_of(&tool(&words(&[
        &dead_pid().to_string(),
        "--count",
        "4",
        "--range",
        &range,
        "--exclude",
        &exclude.join(","),
    ])));
    assert_eq!(distinct(&again), first);
}

#[test]
fn consecutive_gives_a_claimed_block() {
    let _turn = claims_turn();
    let block = pool_block(8);
    let range = range_arg(&block);
    let owner = sleeper();
    let pid = owner.pid().to_string();
    let args = words(&[&pid, "--consecutive", "4", "--range", &range]);
    let ports = ports_of(&tool(&args));
    assert_eq!(ports.len(), 4);
    assert!(ports.windows(2).all(|w| w[1] == w[0] + 1), "{ports:?}");
    assert!(ports.iter().all(|p| block.contains(p) && claimed(*p)));
    // No room left for a block of 8 in that range.
    let out = tool(&words(&[&pid, "--consecutive=8", "--range", &range]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no block of 8 consecutive free ports")
            && err.contains(&format!(" in {range}")),
        "{err}"
    );
    // Without a range: from the kernel's ephemeral range.
    let ports = ports_of(&tool(&words(&[&pid, "--consecutive", "3"])));
    assert!(ports.windows(2).all(|w| w[1] == w[0] + 1), "{ports:?}");
    assert!(ports.iter().all(|p| claimed(*p)));
}

#[test]
fn exclude_is_honoured() {
    let _turn = claims_turn();
    let block = pool_block(5);
    let (lo, hi) = (*block.start(), *block.end());
    let owner = sleeper();
    let excluded = format!("{},{}", lo, lo + 2);
    let args = words(&[
        &owner.pid().to_string(),
        &format!("--range={}", range_arg(&block)),
        "--exclude",
        &excluded,
        "--exclude",
        &hi.to_string(),
        "--count",
        "2",
    ]);
    let got = distinct(&ports_of(&tool(&args)));
    assert_eq!(got, BTreeSet::from([lo + 1, lo + 3]));
}

#[test]
fn address_loopback_is_free_there_and_bound_there() {
    let _turn = claims_turn();
    let owner = sleeper();
    let pid = owner.pid().to_string();
    let port = ports_of(&tool(&words(&[&pid, "--address", "127.0.0.1"])))[0];
    assert!(claimed(port));
    // Claimed, not bound: PID can bind it at once.
    drop(TcpListener::bind(("127.0.0.1", port)).unwrap());
    drop(UdpSocket::bind(("127.0.0.1", port)).unwrap());
    // With BIND_TIMEOUT the holder binds them there.
    let ports = ports_of(&tool(&words(&[
        &pid,
        "--address=127.0.0.1",
        "--count",
        "2",
        "60",
    ])));
    for &port in &ports {
        assert!(TcpListener::bind(("127.0.0.1", port)).is_err(), "{port}");
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_err(), "{port}");
    }
    end_holders(owner.pid());
}

#[test]
fn bind_timeout_with_count_binds_every_port() {
    let _turn = claims_turn();
    let owner = sleeper();
    let pid = owner.pid().to_string();
    let ports = ports_of(&tool(&words(&[&pid, "60", "--count", "3"])));
    assert_eq!(distinct(&ports).len(), 3);
    for &port in &ports {
        assert!(tcp_busy(port) && udp_busy(port), "{port} is not bound");
    }
    // The binds are the holder's: they end with it.
    end_holders(owner.pid());
    assert!(eventually(|| ports
        .iter()
        .all(|&p| portpick::is_port_free(p))));
}

#[test]
fn count_asks_the_portserver_first_then_picks_the_rest() {
    let _turn = claims_turn();
    let pool = pool_ports(2);
    let (address, server) = embedded(&pool);
    let owner = sleeper();
    let out = run_bounded(
        tool_command(TOOL)
            .args(words(&[&owner.pid().to_string(), "--count", "3"]))
            .env("PORTSERVER_ADDRESS", &address),
    );
    let ports = ports_of(&out);
    distinct(&ports);
    assert_eq!(
        ports[..2].iter().copied().collect::<BTreeSet<_>>(),
        pool.iter().copied().collect()
    );
    assert!(!pool.contains(&ports[2]));
    assert!(claimed(ports[2]), "the local one is claimed for PID");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("picking a port locally"), "{err}");
    // An option a portserver cannot honour: no port from it, no warning.
    let (address, server2) = embedded(&pool_ports(1));
    let out = run_bounded(
        tool_command(TOOL)
            .args(words(&[&owner.pid().to_string(), "--exclude", "1"]))
            .env("PORTSERVER_ADDRESS", &address),
    );
    assert_eq!(ports_of(&out).len(), 1);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stat(&address, "total-allocations"), 0);
    assert_eq!(stat(&address, "denied-allocations"), 0);
    server.stop();
    server2.stop();
}

#[test]
fn bad_values_exit_2_with_a_short_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--count", "0"], "invalid --count \"0\""),
        (&["--count", "x"], "invalid --count \"x\""),
        (&["--consecutive"], "argument --consecutive expects a value"),
        (&["--range", "9-8"], "invalid --range \"9-8\""),
        (&["--exclude", "1,,2"], "invalid --exclude"),
        (
            &["--address", "localhost"],
            "invalid --address \"localhost\"",
        ),
        (
            &["--count=2", "--consecutive=2"],
            "cannot be used with --count",
        ),
        (&["--help=x"], "argument --help takes no value"),
        (&["--stats=x"], "argument --stats takes no value"),
        (&["--count=1=2"], "invalid --count \"1=2\""),
    ];
    for (args, want) in cases {
        let out = tool(&words(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("portpicker: ") && first.contains(want),
            "{args:?}: {err}"
        );
        assert!(first.len() < 100, "{first}");
        // The synopsis, not the whole help.
        assert!(
            err.contains("usage: portpicker") && err.lines().count() < 10,
            "{err}"
        );
    }
}

#[test]
fn help_lists_every_command_and_option() {
    let out = tool(&words(&["--help"]));
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[PID] [BIND_TIMEOUT]",
        "--count N",
        "--consecutive N",
        "--range LO-HI",
        "--exclude P",
        "--address ADDR",
        "pick locally: a portserver cannot honour them",
        "--wait PORT",
        "--timeout SECS",
        "--stats",
        "--version",
    ] {
        assert!(help.contains(needle), "no {needle:?} in\n{help}");
    }
}

/// Kills the holders whose owner is `pid` (their binds would outlive the
/// test by BIND_TIMEOUT otherwise).
fn end_holders(pid: u32) {
    let needle = format!("--portpick-internal-holder\0{pid}\0");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let Ok(holder) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill").arg(holder.to_string()).status();
        }
    }
    assert!(eventually(|| holders_for(pid) == 0));
}
