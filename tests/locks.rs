//! Cross-process claims without a portserver: real processes (this test
//! binary run again in a child mode) pick ports at the same time through
//! per-port lock files.
#![cfg(target_os = "linux")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};

use portpick::{Picker, Prober, Protocol};
use support::*;

const CHILD_ENV: &str = "PORTPICK_TEST_LOCK_CHILD";

/// Child mode: pick N ports (lock dir from the env, or none), print them on
/// one line, then hold them until stdin closes.
#[test]
#[ignore = "run as a child process by the tests below"]
fn lock_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (count, dir) = spec.split_once(':').unwrap();
    let picker = if dir == "@env" {
        Picker::new()
    } else {
        Picker::new().lock_dir((!dir.is_empty()).then_some(dir))
    };
    let ports: Vec<String> = (0..count.parse::<usize>().unwrap())
        .map(|_| picker.pick_unused_port().unwrap().to_string())
        .collect();
    println!("PORTS {}", ports.join(" "));
    // Hold until the parent closes our stdin (or dies).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn spawn_child(count: usize, dir: Option<&std::path::Path>) -> Child {
    let spec = format!(
        "{count}:{}",
        dir.map(|d| d.display().to_string()).unwrap_or_default()
    );
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's `PORTS ...` line, waiting at most `PATIENCE`. (The
/// test harness prints it after its own `test lock_child ... `.)
fn ports_of(child: &mut Child) -> Vec<u16> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("PORTS ") {
                let _ = tx.send(line[at + 6..].to_string());
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(PATIENCE)
        .expect("the child printed no ports in time");
    line.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Eight processes picking 50 ports each at once, none returned.
fn eight_by_fifty(dir: Option<&std::path::Path>) -> (usize, Vec<(u16, usize)>) {
    let mut children: Vec<Reaper> = (0..8).map(|_| Reaper(spawn_child(50, dir))).collect();
    let mut count: BTreeMap<u16, usize> = BTreeMap::new();
    for c in &mut children {
        for p in ports_of(&mut c.0) {
            *count.entry(p).or_default() += 1;
        }
    }
    let total = count.values().sum();
    let dups = count.into_iter().filter(|&(_, n)| n > 1).collect();
    drop(children);
    (total, dups)
}

#[test]
fn eight_processes_get_four_hundred_distinct_ports() {
    let dir = TempDir::new("locks");
    let (total, dups) = eight_by_fifty(Some(dir.path()));
    assert_eq!(total, 400);
    assert!(dups.is_empty(), "duplicates across processes: {dups:?}");
    // Lock files are reused, not piled up: at most one per port.
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files <= 400, "{files} lock files");

    // The same without locks, to show why they exist (not asserted: whether
    // the kernel repeats itself here depends on the machine).
    let (total, dups) = eight_by_fifty(None);
    eprintln!(
        "without locks: {} of {total} ports handed to more than one process: {dups:?}",
        dups.len()
    );
}

/// Offers one port from "the kernel" every time, and calls every port free.
struct Offer(AtomicU16);

impl Prober for Offer {
    fn is_free(&self, _: u16, _: Protocol) -> bool {
        true
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        Some(self.0.load(Ordering::Relaxed))
    }
}

fn picker_offering(port: u16, dir: &std::path::Path) -> Picker<Offer> {
    Picker::with_prober(Offer(AtomicU16::new(port))).lock_dir(Some(dir))
}

#[test]
fn kill_9_frees_the_ports() {
    let dir = TempDir::new("locks");
    let mut child = Reaper(spawn_child(3, Some(dir.path())));
    let ports = ports_of(&mut child.0);
    for &p in &ports {
        // Claimed by a live process: never ours, though "the kernel" offers it.
        let other = picker_offering(p, dir.path());
        let got = other.pick_unused_port().unwrap();
        assert_ne!(got, p, "port {p} locked by a live process was picked");
    }
    child.kill(); // SIGKILL: no destructor runs, the kernel drops the locks.
    for &p in &ports {
        let other = picker_offering(p, dir.path());
        assert_eq!(other.pick_unused_port(), Ok(p));
    }
}

#[test]
fn return_port_and_the_guard_release_the_lock() {
    let dir = TempDir::new("locks");
    let port = 31234;
    let a = picker_offering(port, dir.path());
    let b = picker_offering(port, dir.path());
    assert_eq!(a.pick_unused_port(), Ok(port));
    assert_ne!(b.pick_unused_port().unwrap(), port, "held by a");
    assert!(a.return_port(port));
    let b2 = picker_offering(port, dir.path());
    assert_eq!(b2.pick_unused_port(), Ok(port), "released by return_port");
    assert!(b2.return_port(port));

    let guard = a.pick_guard().unwrap();
    assert_eq!(guard.port(), port);
    let c = picker_offering(port, dir.path());
    assert_ne!(c.pick_unused_port().unwrap(), port, "held by the guard");
    drop(guard);
    let d = picker_offering(port, dir.path());
    assert_eq!(
        d.pick_unused_port(),
        Ok(port),
        "released by the guard's drop"
    );
}

#[test]
fn an_unusable_lock_dir_falls_back_with_one_warning() {
    let dir = TempDir::new("locks");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    // Below a regular file nothing can be created, even by root.
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(std::process::id().to_string())
        .env("PORTPICK_LOCK_DIR", blocker.join("locks"))
        .env_remove("PORTSERVER_ADDRESS")
        .output()
        .unwrap();
    assert!(out.status.success());
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(port > 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("warning: cannot use lock directory").count(),
        1,
        "{err}"
    );
    assert!(err.contains("a-file"), "{err}");

    // In-process: many picks, still ports, no error.
    let picker = Picker::new().lock_dir(Some(blocker.join("locks")));
    let ports: BTreeSet<u16> = (0..20)
        .map(|_| picker.pick_unused_port().unwrap())
        .collect();
    assert_eq!(ports.len(), 20);
}

#[test]
fn an_empty_lock_dir_variable_turns_locks_off() {
    let dir = TempDir::new("locks");
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(std::process::id().to_string())
        .env("PORTPICK_LOCK_DIR", "")
        .env("TMPDIR", dir.path())
        .env_remove("PORTSERVER_ADDRESS")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing was written to the temp dir: no default lock dir was made.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Unset: the tool claims in the per-user directory under TMPDIR,
    // owner-only.
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(std::process::id().to_string())
        .env_remove("PORTPICK_LOCK_DIR")
        .env("TMPDIR", dir.path())
        .env_remove("PORTSERVER_ADDRESS")
        .output()
        .unwrap();
    assert!(out.status.success());
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("portpick-"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&made[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_default_dir_others_can_write_is_not_trusted() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = TempDir::new("locks");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let squatted = tmp.path().join(format!("portpick-{uid}"));
    std::fs::create_dir(&squatted).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(std::process::id().to_string())
        .env_remove("PORTPICK_LOCK_DIR")
        .env_remove("PORTSERVER_ADDRESS")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "still a port");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by others"), "{err}");
    assert_eq!(
        std::fs::read_dir(&squatted).unwrap().count(),
        0,
        "no lock file written there"
    );
}

#[test]
fn the_library_claims_only_when_asked() {
    let tmp = TempDir::new("locks");
    let run = |value: Option<&str>| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "lock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "3:@env")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        match value {
            None => cmd.env_remove("PORTPICK_LOCK_DIR"),
            Some(v) => cmd.env("PORTPICK_LOCK_DIR", v),
        };
        assert!(wait_output(cmd.spawn().unwrap(), PATIENCE).status.success());
        std::fs::read_dir(tmp.path()).unwrap().count()
    };
    // Unset or empty: Python's behaviour, nothing written.
    assert_eq!(run(None), 0);
    assert_eq!(run(Some("")), 0);
    // `default`: the per-user directory under TMPDIR, with 3 lock files.
    assert_eq!(run(Some("default")), 1);
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let dir = tmp.path().join(format!("portpick-{uid}"));
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 3);
}
