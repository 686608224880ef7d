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

/// Whether a fresh picker on `dir` can claim `port`, soon. A released
/// claim can linger for a moment: a thread of this process that is
/// spawning a child holds copies of our open files between its fork and
/// its exec (they close on exec), and a flock belongs to the open file.
fn claimable_soon(port: u16, dir: &std::path::Path) -> bool {
    eventually(|| picker_offering(port, dir).pick_unused_port() == Ok(port))
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
        assert!(claimable_soon(p, dir.path()), "{p} still locked");
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
    assert!(claimable_soon(port, dir.path()), "released by return_port");

    let guard = a.pick_guard().unwrap();
    assert_eq!(guard.port(), port);
    let c = picker_offering(port, dir.path());
    assert_ne!(c.pick_unused_port().unwrap(), port, "held by the guard");
    drop(guard);
    assert!(
        claimable_soon(port, dir.path()),
        "released by the guard's drop"
    );
    // into_port keeps the claim.
    let kept = a.pick_guard().unwrap().into_port();
    assert_eq!(kept, port);
    let e = picker_offering(port, dir.path());
    assert_ne!(e.pick_unused_port().unwrap(), port, "kept by into_port");
    assert!(a.return_port(port));
    assert!(claimable_soon(port, dir.path()));
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

/// Runs the child mode to completion (stdin empty: it exits after its
/// picks) and returns its ports and its stderr.
fn run_child(count: usize, dir: &std::path::Path) -> (Vec<u16>, String) {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{count}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, PATIENCE);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|l| l.find("PORTS ").map(|at| l[at + 6..].to_string()))
        .unwrap_or_else(|| panic!("no ports in {stdout:?}"));
    let ports = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    (ports, String::from_utf8(out.stderr).unwrap())
}

fn assert_one_warning_and_ports(dir: &std::path::Path) {
    let (ports, stderr) = run_child(30, dir);
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 30, "{ports:?}");
    assert_eq!(
        stderr.matches("warning: cannot use lock directory").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
}

#[test]
fn the_library_warns_once_when_the_lock_dir_cannot_be_made() {
    // Below a regular file nothing can be created, even by root.
    let tmp = TempDir::new("locks");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    assert_one_warning_and_ports(&file.join("locks"));
}

#[test]
fn a_read_only_lock_dir_falls_back_with_one_warning() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("locks");
    let dir = tmp.path().join("ro");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    // root (or CAP_DAC_OVERRIDE) writes through the mode bits: the test
    // then proves nothing, so it says so and stops.
    let canary = dir.join("canary");
    if std::fs::write(&canary, "").is_ok() {
        let _ = std::fs::remove_file(&canary);
        eprintln!("skipped: we can write a 0500 directory (root?); see the test above");
        return;
    }
    assert_one_warning_and_ports(&dir);
}

#[test]
fn the_tools_hold_keeps_the_lock() {
    let dir = TempDir::new("locks");
    let out = wait_output(
        Command::new(env!("CARGO_BIN_EXE_portpicker"))
            .args([&std::process::id().to_string(), "3"])
            .env("PORTPICK_LOCK_DIR", dir.path())
            .env_remove("PORTSERVER_ADDRESS")
            .env_remove("PORTPICK_HOLD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        PATIENCE,
    );
    assert!(out.status.success());
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The tool has exited; its helper holds the lock (our prober calls
    // every port free, so only the lock stops us).
    let other = picker_offering(port, dir.path());
    assert_ne!(other.pick_unused_port().unwrap(), port, "lock not held");
    assert!(
        claimable_soon(port, dir.path()),
        "lock on {port} never released"
    );
}

#[test]
fn portserver_ports_are_not_locked() {
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let dir = TempDir::new("locks");
    let owner = sleeper();
    let out = wait_output(
        Command::new(env!("CARGO_BIN_EXE_portpicker"))
            .args([&owner.pid().to_string(), "5"])
            .env("PORTPICK_LOCK_DIR", dir.path())
            .env("PORTSERVER_ADDRESS", &address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        PATIENCE,
    );
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(port, ports[0]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(
        picker_offering(port, dir.path()).pick_unused_port(),
        Ok(port)
    );
}

#[test]
fn lock_files_are_reused() {
    let dir = TempDir::new("locks");
    let picker = picker_offering(31240, dir.path());
    for _ in 0..100 {
        // (Retried: see `claimable_soon`.)
        assert!(eventually(|| match picker.pick_unused_port() {
            Ok(31240) => true,
            Ok(other) => !picker.return_port(other),
            Err(_) => false,
        }));
        assert!(picker.return_port(31240));
    }
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("31240.lock")]);
}

#[test]
fn threads_with_their_own_pickers_on_one_dir_never_share_a_port() {
    // In one process, two pickers' claims exclude each other as two
    // processes' do (flock locks belong to the open file, not the process).
    let dir = TempDir::new("locks");
    let a = picker_offering(31250, dir.path());
    let b = picker_offering(31250, dir.path());
    assert_eq!(a.pick_unused_port(), Ok(31250));
    assert_ne!(b.pick_unused_port().unwrap(), 31250);
    // Real probes: each thread's picker holds its 25 claims until all
    // threads have picked.
    let all_picked = std::sync::Barrier::new(4);
    let ports: Vec<u16> = in_threads(4, |_| {
        let p = Picker::new().lock_dir(Some(dir.path()));
        let got: Vec<u16> = (0..25).map(|_| p.pick_unused_port().unwrap()).collect();
        all_picked.wait();
        got
    });
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 100, "{ports:?}");
}
