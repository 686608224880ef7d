//! The state file against what a shared host throws at it: a planted
//! symlink or foreign file, a journal replaced while serving, and (with
//! `--ignored`, as root: a 64 KiB tmpfs) a full disk.
#![cfg(target_os = "linux")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portpick::__private::fakes::FakeProcesses;
use portpick::__private::server::parse_state;
use portpick::server::{ServerConfig, ServerError, StateError};
use support::*;

fn state_args(address: &str, state: &Path) -> Vec<String> {
    let port = pool_ports(1)[0];
    vec![
        format!("--portserver_address={address}"),
        format!("--portserver_static_pool={port}-{port}"),
        format!("--portserver_state_file={}", state.display()),
    ]
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_portserver(&args)
}

fn with_state(state: &Path) -> impl FnOnce(ServerConfig) -> ServerConfig {
    let state = state.to_path_buf();
    move |c| c.state_file(Some(state))
}

/// A state file's entries as `(port, pid)`, checking it is whole.
fn whole_journal(path: &Path) -> Vec<(u16, u32)> {
    let bytes = std::fs::read(path).unwrap();
    let s = parse_state(&bytes);
    assert!(
        !s.bad_header && s.errors.is_empty(),
        "journal not whole: {s:?}\n{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(bytes.ends_with(b"\n"), "ends in a torn line");
    s.entries.iter().map(|(p, o)| (*p, o.pid)).collect()
}

#[test]
fn a_state_path_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let dir = TempDir::new("state-link");
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    let state = dir.path().join("state");
    std::os::unix::fs::symlink(&target, &state).unwrap();

    let out = run(&state_args(&unique_address("link"), &state));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&state)
        .unwrap()
        .file_type()
        .is_symlink());

    let procs = Arc::new(FakeProcesses::default());
    let config = ServerConfig::new(unique_address("link").parse().unwrap())
        .ports(pool_ports(1))
        .state_file(Some(state.clone()))
        .log_level(portpick::server::Level::Error);
    match portpick::server::PortServer::new(config)
        .process_table(procs)
        .start()
    {
        Err(ServerError::State(StateError::Symlink { path })) => assert_eq!(path, state),
        other => panic!("expected a symlink error, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

#[test]
fn a_file_that_is_not_a_journal_is_refused_and_left_untouched() {
    let dir = TempDir::new("state-foreign");
    let state = dir.path().join("hosts");
    let hosts = "127.0.0.1 localhost\n::1 localhost\n";
    std::fs::write(&state, hosts).unwrap();
    let out = run(&state_args(&unique_address("foreign"), &state));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a portpick state file"), "{err}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), hosts);

    // A directory is not one either (and is not replaced).
    let sub = dir.path().join("a-dir");
    std::fs::create_dir(&sub).unwrap();
    let out = run(&state_args(&unique_address("foreign"), &sub));
    assert_eq!(out.status.code(), Some(1));
    assert!(sub.is_dir());

    // An empty file (say, made by `touch` beforehand) is an empty state.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let address = unique_address("foreign");
    let args = state_args(&address, &empty);
    let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let _server = ServerProcess::start(&address, &args);
    assert!(whole_journal(&empty).is_empty());
}

#[test]
fn a_planted_temp_symlink_is_not_followed() {
    let dir = TempDir::new("state-tmp-link");
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    let state = dir.path().join("state");
    std::fs::write(&state, "portpick-state 1\n").unwrap();
    let tmp = dir.path().join("state.tmp");
    std::os::unix::fs::symlink(&target, &tmp).unwrap();

    let out = run(&state_args(&unique_address("tmp-link"), &state));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "portpick-state 1\n"
    );
    assert!(!std::fs::symlink_metadata(&state)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_stale_temp_file_is_replaced() {
    let dir = TempDir::new("state-tmp-stale");
    let state = dir.path().join("state");
    let tmp = dir.path().join("state.tmp");
    std::fs::write(&tmp, "half a snapshot").unwrap();
    let procs = Arc::new(FakeProcesses::default());
    let (address, _server) = fake_server(pool_ports(1), &procs, with_state(&state));
    procs.start(4242, 1);
    assert!(ask(&address, 4242).is_some());
    assert!(!tmp.exists());
    assert_eq!(whole_journal(&state).len(), 1);
}

/// Allocations by owners that come and go, enough to make the journal
/// want compaction: returns the ports the last live owner holds.
fn churn(address: &str, procs: &FakeProcesses, first_pid: u32, n: u32) -> (u32, Vec<u16>) {
    let mut last = (0, Vec::new());
    for pid in first_pid..first_pid + n {
        procs.start(pid, u64::from(pid));
        let port = ask(address, pid).unwrap_or_else(|| panic!("pid {pid} got no port"));
        if let Some(prev) = pid.checked_sub(1).filter(|p| *p >= first_pid) {
            procs.end(prev);
        }
        last = (pid, vec![port]);
        // Let the sweep free the dead owner's port now and then.
        if pid % 8 == 0 {
            assert!(eventually(|| stat(address, "num-ports-held") <= 1));
        }
    }
    last
}

#[test]
fn compaction_through_a_planted_temp_symlink_fails_safely() {
    let dir = TempDir::new("state-compact-link");
    let state = dir.path().join("state");
    let target = dir.path().join("precious");
    std::fs::write(&target, "precious\n").unwrap();
    let procs = Arc::new(FakeProcesses::default());
    let ports: Vec<u16> = (41000..41016).collect();
    let log = LogBuf::default();
    let (address, server) = fake_server(ports.clone(), &procs, |c| {
        with_state(&state)(c)
            .reclaim_interval(Duration::from_millis(5))
            .log_to(log.clone())
    });
    // Planted after the start: the next compaction meets it.
    std::os::unix::fs::symlink(&target, dir.path().join("state.tmp")).unwrap();
    let (pid, held) = churn(&address, &procs, 1000, 1300);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(&state)
        .unwrap()
        .file_type()
        .is_symlink());
    // Every allocation went to the journal at the path.
    assert_eq!(whole_journal(&state).len(), 1300);
    drop(server);
    assert!(
        log.text()
            .contains("symbolic link; not following it; still appending to the old journal"),
        "{}",
        log.text()
    );

    std::fs::remove_file(dir.path().join("state.tmp")).unwrap();
    let (address, _server) = fake_server(ports, &procs, with_state(&state));
    assert_eq!(stat(&address, "num-ports-held"), 1);
    assert_eq!(whole_journal(&state), vec![(held[0], pid)]);
}

#[test]
fn a_journal_replaced_while_serving_is_not_written_to() {
    let dir = TempDir::new("state-replaced");
    let state = dir.path().join("state");
    let procs = Arc::new(FakeProcesses::default());
    let log = LogBuf::default();
    let (address, _server) = fake_server(pool_ports(2), &procs, |c| {
        with_state(&state)(c).log_to(log.clone())
    });
    procs.start(4242, 1);
    assert!(ask(&address, 4242).is_some());

    // Someone moves another file over the path (an operator restoring a
    // backup, a cleaner, a second server pointed at the same file).
    let other = dir.path().join("other");
    std::fs::write(&other, "portpick-state 1\n").unwrap();
    std::fs::rename(&other, &state).unwrap();
    // Writing on into the unlinked journal would lose the record on the
    // next restart: no port instead.
    assert_eq!(ask(&address, 4242), None);
    assert_eq!(stat(&address, "denied-state-file"), 1);
    assert!(
        log.wait_for("was replaced or removed while serving"),
        "{}",
        log.text()
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "portpick-state 1\n"
    );

    std::fs::remove_file(&state).unwrap();
    assert_eq!(ask(&address, 4242), None);
    assert!(!state.exists());
}

/// A tmpfs of 64 KiB mounted on a fresh directory, unmounted on drop.
struct TinyDisk {
    /// Removed after the unmount (fields drop after `drop`).
    _dir: TempDir,
    mnt: PathBuf,
}

impl TinyDisk {
    fn mount() -> TinyDisk {
        let dir = TempDir::new("tiny-disk");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => TinyDisk { _dir: dir, mnt },
            Ok(o) => panic!(
                "this test needs root to mount a 64 KiB tmpfs (it runs in .ci/run): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("this test needs `mount` and root: {e}"),
        }
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.mnt.join("filler")).unwrap();
        let chunk = [b'x'; 512];
        while f.write_all(&chunk).is_ok() {}
        // Whatever part of a chunk fit stays: the disk is full to the byte.
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.mnt.join("filler")).unwrap();
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs; run by .ci/run with --ignored"]
fn a_full_disk_does_not_tear_the_journal() {
    let disk = TinyDisk::mount();
    let state = disk.mnt.join("state");
    let procs = Arc::new(FakeProcesses::default());
    let ports: Vec<u16> = (40000..50000).collect();
    let (address, server) = fake_server(ports.clone(), &procs, with_state(&state));
    disk.fill();
    // Allocate until the journal's last block is full and a record does
    // not fit: that allocation must be denied, the ones before kept.
    let mut granted = Vec::new();
    let mut denied = 0;
    for pid in 1000..3000 {
        procs.start(pid, 7);
        match ask(&address, pid) {
            Some(port) => granted.push((port, pid)),
            None => {
                denied += 1;
                if denied == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(denied, 3, "the disk never filled");
    assert_eq!(stat(&address, "denied-state-file"), 3);
    assert_eq!(whole_journal(&state), granted);

    // Space comes back: records are written again, whole.
    disk.free();
    for pid in 3000..3010 {
        procs.start(pid, 7);
        granted.push((ask(&address, pid).unwrap(), pid));
    }
    assert_eq!(whole_journal(&state), granted);
    drop(server);
    let (address, _server) = fake_server(ports, &procs, with_state(&state));
    assert_eq!(stat(&address, "num-ports-held"), granted.len() as u64);
}

#[test]
#[ignore = "needs root to mount a tmpfs; run by .ci/run with --ignored"]
fn a_restart_on_a_full_disk_leaves_no_temp_file() {
    let disk = TinyDisk::mount();
    let state = disk.mnt.join("state");
    let procs = Arc::new(FakeProcesses::default());
    let ports = pool_ports(3);
    let (address, server) = fake_server(ports.clone(), &procs, with_state(&state));
    procs.start(4242, 1);
    assert!(ask(&address, 4242).is_some());
    drop(server);
    let before = std::fs::read(&state).unwrap();
    disk.fill();

    let config = ServerConfig::new(unique_address("full").parse().unwrap())
        .ports(ports)
        .state_file(Some(state.clone()))
        .log_level(portpick::server::Level::Error);
    match portpick::server::PortServer::new(config)
        .process_table(Arc::clone(&procs))
        .start()
    {
        Err(ServerError::State(e)) => assert!(e.to_string().contains("state"), "{e}"),
        other => panic!("expected a state error, got {other:?}"),
    }
    let names: Vec<_> = std::fs::read_dir(&disk.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!names.iter().any(|n| n == "state.tmp"), "{names:?}");
    assert_eq!(std::fs::read(&state).unwrap(), before);
}
