//! Cross-process claims without a portserver, with real processes (this
//! test binary run again in a child mode, driven through its stdin) and no
//! portpick variables set: the defaults are what is tested.
//!
//! Claims are host-wide within the network namespace, and other test
//! binaries pick ports at the same time: every port checked here was picked
//! by the library in this test (so nobody else holds it), never assumed.
#![cfg(target_os = "linux")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;

use portpick::{NoFreePortReason, Picker, Prober, Protocol};
use support::*;

/// Child mode. Commands on stdin, one per line, answered on stdout:
/// `pick N` picks N ports and holds them (`PORTS p1 p2 ...`); `offered P`
/// offers P to a picker as the only kernel port and holds it if that
/// picker gets it (`OFFERED yes|no`); `exhaust` opens files until none can
/// be opened, then picks (`ERR reason message` or `PORTS p`). EOF: exit.
#[test]
#[ignore = "run as a child process by the tests below"]
fn claim_child() {
    // Claims as the environment says (a test turns them off so), but no
    // portserver whatever PORTSERVER_ADDRESS says.
    let picker = Picker::new().portserver(None);
    let mut hoard = Vec::new();
    let mut offered = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["pick", n] => {
                let ports: Vec<String> = (0..n.parse::<usize>().unwrap())
                    .map(|_| picker.pick_unused_port().unwrap().to_string())
                    .collect();
                println!("PORTS {}", ports.join(" "));
            }
            ["offered", p] => {
                let port: u16 = p.parse().unwrap();
                let other = offering(port);
                let yes = other.pick_unused_port() == Ok(port);
                offered.push(other);
                println!("OFFERED {}", if yes { "yes" } else { "no" });
            }
            ["exhaust"] => {
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    hoard.push(f);
                }
                match picker.pick_unused_port() {
                    Ok(p) => println!("PORTS {p}"),
                    Err(e) => println!("ERR {:?} {e}", e.reason()),
                }
                hoard.clear();
            }
            _ => println!("BAD {line}"),
        }
        std::io::stdout().flush().unwrap();
    }
}

/// A child process in claim mode.
struct ClaimChild {
    child: Reaper,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_done: Option<std::thread::JoinHandle<()>>,
}

impl ClaimChild {
    fn start() -> ClaimChild {
        Self::start_with(&[], &[])
    }

    /// Runs the child under `wrapper` (a program and its arguments, which
    /// ends by running the child: `unshare -n`, `sh -c '... exec "$0" "$@"'`)
    /// with only the portpick variables in `env` set.
    fn start_with(wrapper: &[&str], env: &[(&str, &str)]) -> ClaimChild {
        let exe = std::env::current_exe().unwrap();
        let child_args = [
            "--exact",
            "claim_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ];
        let mut cmd = match wrapper.split_first() {
            None => Command::new(&exe),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
        };
        cmd.args(child_args)
            .env_remove("PORTSERVER_ADDRESS")
            .env_remove(portpick::CLAIMS_ENV)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Reaper(cmd.spawn().unwrap());
        let stdin = child.0.stdin.take();
        let out = child.0.stdout.take().unwrap();
        let err = child.0.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        let stderr_done = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        ClaimChild {
            child,
            stdin,
            lines,
            stderr,
            stderr_done: Some(stderr_done),
        }
    }

    /// Sends `command` and returns the answer (what follows its tag; the
    /// test harness may print `test claim_child ... ` before it).
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin.as_mut().unwrap(), "{command}").unwrap();
        loop {
            let line = self.lines.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!(
                    "no answer to {command:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                )
            });
            for tag in ["PORTS ", "ERR ", "BAD ", "OFFERED "] {
                if let Some(at) = line.find(tag) {
                    return line[at..].to_string();
                }
            }
        }
    }

    fn pick(&mut self, n: usize) -> Vec<u16> {
        let answer = self.ask(&format!("pick {n}"));
        let ports = answer
            .strip_prefix("PORTS ")
            .unwrap_or_else(|| panic!("{answer}"));
        ports
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    /// Ends the child (its stdin closes) and returns all it wrote on
    /// stderr.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        assert!(
            eventually(|| self.child.0.try_wait().unwrap().is_some()),
            "the child did not exit"
        );
        if let Some(t) = self.stderr_done.take() {
            t.join().unwrap();
        }
        let text = self.stderr.lock().unwrap().clone();
        text
    }
}

#[test]
fn eight_processes_hold_four_hundred_distinct_ports() {
    let _turn = claims_turn();
    let mut children: Vec<ClaimChild> = (0..8).map(|_| ClaimChild::start()).collect();
    // All eight pick at once: send every command, then read the answers.
    for c in &mut children {
        writeln!(c.stdin.as_mut().unwrap(), "pick 50").unwrap();
    }
    let mut count: BTreeMap<u16, usize> = BTreeMap::new();
    let mut each = Vec::new();
    for c in &mut children {
        let line = loop {
            let line = c.lines.recv_timeout(PATIENCE).expect("the child's ports");
            if let Some(at) = line.find("PORTS ") {
                break line[at + 6..].to_string();
            }
        };
        let ports: BTreeSet<u16> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        for &p in &ports {
            *count.entry(p).or_default() += 1;
        }
        each.push(ports);
    }
    let total: usize = count.values().sum();
    let dups: Vec<_> = count.iter().filter(|&(_, &n)| n > 1).collect();
    assert_eq!(total, 400);
    assert!(dups.is_empty(), "ports held by two processes: {dups:?}");
    // Every one is held by its process's claim, under the documented name.
    for (c, ports) in children.iter().zip(&each) {
        assert_eq!(&claims_held_by(c.child.pid()), ports);
    }
}

/// A prober whose kernel offers `port` every time, free on every check:
/// the claims alone decide.
#[derive(Debug)]
struct Offering(u16);

impl Prober for Offering {
    fn is_free(&self, _: u16, _: Protocol) -> bool {
        true
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        Some(self.0)
    }
}

/// A default picker (documented claim names) offered only `port`.
fn offering(port: u16) -> Picker<Offering> {
    Picker::with_prober(Offering(port)).ignore_environment()
}

/// Whether a picker offered `port` gets it, soon. A released claim can
/// linger for a moment in this process: a thread that is spawning a child
/// holds copies of our descriptors between its fork and its exec.
fn claimable_soon(port: u16) -> bool {
    eventually(|| {
        let p = offering(port);
        p.pick_unused_port() == Ok(port)
    })
}

#[test]
fn another_processes_claims_are_skipped_until_it_is_killed() {
    let _turn = claims_turn();
    let mut child = ClaimChild::start();
    let ports = child.pick(3);
    for &p in &ports {
        assert!(claimed(p), "{p} not claimed by the child");
        let got = offering(p).pick_unused_port().unwrap();
        assert_ne!(got, p, "port {p} claimed by a live process was picked");
    }
    child.child.kill(); // SIGKILL: no destructor runs; the kernel drops the claims.
    for &p in &ports {
        // At once: the child's sockets are closed before `wait` returns.
        assert!(!claimed(p), "{p} still claimed after kill -9");
    }
}

#[test]
fn return_port_and_the_guard_release_the_claim() {
    let _turn = claims_turn();
    let a = Picker::new().ignore_environment();
    let port = a.pick_unused_port().unwrap();
    assert!(claimed(port));
    assert_ne!(
        offering(port).pick_unused_port().unwrap(),
        port,
        "held by a"
    );
    assert!(a.return_port(port));
    assert!(claimable_soon(port), "released by return_port");

    // The guard, on a picker offered that port (nobody else has it now:
    // `claimable_soon` left it unclaimed a moment ago).
    let b = offering(port);
    let guard = b.pick_guard().unwrap();
    assert_eq!(guard.port(), port);
    assert!(claimed(port), "held by the guard");
    drop(guard);
    assert!(claimable_soon(port), "released by the guard's drop");
    // into_port keeps the claim until return_port.
    let kept = b.pick_guard().unwrap().into_port();
    assert_eq!(kept, port);
    assert_ne!(offering(port).pick_unused_port().unwrap(), port);
    assert!(b.return_port(port));
    assert!(claimable_soon(port));
}

#[test]
fn pickers_in_one_process_never_share_a_port() {
    let _turn = claims_turn();
    // Two binds of one name conflict within a process too.
    let all_picked = std::sync::Barrier::new(4);
    let ports: Vec<u16> = in_threads(4, |_| {
        let p = Picker::new().ignore_environment();
        let got: Vec<u16> = (0..25).map(|_| p.pick_unused_port().unwrap()).collect();
        all_picked.wait();
        got
    });
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 100, "{ports:?}");
}

#[test]
fn the_off_switch_restores_pythons_behaviour() {
    let _turn = claims_turn();
    // In code.
    let off = Picker::new().ignore_environment().claims(false);
    let port = off.pick_unused_port().unwrap();
    assert!(!claimed(port));
    assert_eq!(offering(port).pick_unused_port(), Ok(port));
    // In the environment, for a whole process: no claims, no warning.
    let mut child = ClaimChild::start_with(&[], &[(portpick::CLAIMS_ENV, "off")]);
    let ports = child.pick(20);
    assert_eq!(ports.len(), 20);
    let held = claims_held_by(child.child.pid());
    assert!(held.is_empty(), "{held:?}");
    let err = child.finish();
    assert!(err.is_empty(), "{err}");
}

#[test]
fn running_out_of_descriptors_is_reported_as_such() {
    let _turn = claims_turn();
    // Under a small limit, so that using it all up is quick anywhere.
    let mut child =
        ClaimChild::start_with(&["sh", "-c", "ulimit -n 256 && exec \"$0\" \"$@\""], &[]);
    let answer = child.ask("exhaust");
    let reason = format!("{:?}", NoFreePortReason::OutOfFileDescriptors);
    assert!(answer.starts_with(&format!("ERR {reason} ")), "{answer}");
    assert!(answer.contains("too many open files"), "{answer}");
}

#[test]
fn claims_stop_at_half_the_open_file_limit_with_one_warning() {
    let _turn = claims_turn();
    // 128 open files: at most 64 claims; later picks are Python's.
    let mut child =
        ClaimChild::start_with(&["sh", "-c", "ulimit -n 128 && exec \"$0\" \"$@\""], &[]);
    let ports = child.pick(100);
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 100);
    let held = claims_held_by(child.child.pid());
    assert_eq!(
        held.len(),
        64,
        "claims held of 100 picks under a limit of 128"
    );
    assert!(held.iter().all(|p| ports.contains(p)));
    let err = child.finish();
    assert_eq!(
        err.matches("warning: cannot claim port").count(),
        1,
        "{err}"
    );
    assert!(err.contains("half of this process's limit of 128"), "{err}");
}

#[test]
fn a_fresh_network_namespace_has_its_own_claims() {
    let _turn = claims_turn();
    // A port we claim out here ...
    let outer = Picker::new().ignore_environment();
    let port = outer.pick_unused_port().unwrap();
    // ... is refused to a process of our network namespace (the control:
    // the check below can fail) ...
    let mut same = ClaimChild::start();
    assert_eq!(same.ask(&format!("offered {port}")), "OFFERED no");
    drop(same);
    if !can_unshare_net() {
        return;
    }
    // ... but not to one in a fresh network namespace, which now holds it
    // there; and its claim is not seen out here either.
    let mut inner = ClaimChild::start_with(&["unshare", "-n"], &[]);
    assert_eq!(inner.ask(&format!("offered {port}")), "OFFERED yes");
    assert!(outer.return_port(port));
    assert!(claimable_soon(port), "the inner claim is seen out here");
    // Picking works in there (only a loopback, and it is down).
    assert_eq!(inner.pick(5).len(), 5);
}

#[test]
fn a_local_picker_and_the_portserver_never_hand_out_one_port() {
    let _turn = claims_turn();
    // A process without PORTSERVER_ADDRESS holds 20 locally picked ports;
    // the server's pool has those and 5 others. Free by every bind, the
    // claimed ones must still never be handed out.
    let mut local = ClaimChild::start();
    let claimed_ports = local.pick(20);
    let others = pool_ports(5);
    let pool: Vec<u16> = claimed_ports.iter().chain(&others).copied().collect();
    let (address, _server) = embedded(&pool);
    let owner = sleeper();
    let mut got = BTreeSet::new();
    while let Some(port) = ask(&address, owner.pid()) {
        assert!(got.insert(port), "{port} handed out twice");
        assert!(got.len() <= pool.len());
    }
    let shared: Vec<u16> = got
        .intersection(&claimed_ports.iter().copied().collect())
        .copied()
        .collect();
    assert!(
        shared.is_empty(),
        "claimed by a local picker and handed out: {shared:?}"
    );
    assert_eq!(got, others.iter().copied().collect::<BTreeSet<u16>>());
    // Once the local picker is gone, its ports are the server's to give.
    local.child.kill();
    assert!(eventually(|| ask(&address, owner.pid()).is_some()));
}
