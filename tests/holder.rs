//! The tool's holder: one per call whose PID lives, gone with it, keeping
//! none of the caller's streams; one job's cleanup ends that job's claims
//! only (issue 17, finding 4); a process limit gives one warning and a
//! port. Other users' attacks on the old shared helper: tests/other_users.rs.
#![cfg(target_os = "linux")]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

/// Every process whose environment has `tag` (`NAME=VALUE`): what a CI
/// runner's cleanup of one job kills.
fn kill_job(tag: &str) {
    let tag = tag.as_bytes();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|var| var == tag) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Child mode, in a fresh network namespace: finding 4 of issue 17.
#[test]
#[ignore = "run in a fresh network namespace by the test below"]
fn jobs_child() {
    if !is_child("jobs_child") {
        return;
    }
    let job_a = format!("PORTPICK_TEST_JOB={}", unique("job-a"));
    let job_b = format!("PORTPICK_TEST_JOB={}", unique("job-b"));
    let in_job = |cmd: &mut Command, job: &str| {
        let (k, v) = job.split_once('=').unwrap();
        cmd.env(k, v);
    };
    let mut a = Command::new("sleep");
    in_job(a.arg("300"), &job_a);
    let a = Reaper(a.stdin(Stdio::null()).spawn().unwrap());
    let mut b = Command::new("sleep");
    in_job(b.arg("300"), &job_b);
    let b = Reaper(b.stdin(Stdio::null()).spawn().unwrap());
    // Job A calls first (the old design's shared helper was then A's).
    let mut call = tool_command(TOOL);
    in_job(call.arg(a.pid().to_string()), &job_a);
    printed_port(&run_bounded(&mut call));
    let mut call = tool_command(TOOL);
    in_job(call.arg(b.pid().to_string()), &job_b);
    let port_b = printed_port(&run_bounded(&mut call));
    kill_job(&job_a);
    // Past a sweep: job B lives, and so does its claim.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(claimed(port_b), "job A's cleanup dropped job B's claim");
    assert_eq!(holders_for(b.pid()), 1);
    drop(b);
    assert!(eventually(|| !claimed(port_b)));
    println!("jobs_child OK");
}

#[test]
fn one_jobs_cleanup_keeps_another_jobs_claims() {
    let _turn = claims_turn();
    in_fresh_netns("jobs_child");
}

#[test]
fn a_process_limit_gives_one_warning_and_a_port() {
    let _turn = claims_turn();
    if emulated() {
        eprintln!("skipped: under qemu-user, which needs a thread of its own");
        return;
    }
    let Some(nobody) = ForNobody::new(TOOL) else {
        return;
    };
    let owner = sleeper();
    // As nobody with room for one process: the call itself. Root has no
    // such limit (CAP_SYS_RESOURCE), hence another user.
    let mut cmd = as_nobody("prlimit");
    cmd.args(["--nproc=1:1", &nobody.path(TOOL), &owner.pid().to_string()])
        .env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    let out = run_bounded(&mut cmd);
    let port = printed_port(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot start a holder"), "{err}");
    assert!(err.contains("its claim ends with this call"), "{err}");
    assert!(!claimed(port));
    assert_eq!(holders_for(owner.pid()), 0);
}

#[test]
fn one_holder_per_call_whose_owner_lives_gone_with_it() {
    let _turn = claims_turn();
    // Nobody to follow: a port, no holder, no claim after the call.
    for pid in [dead_pid(), 4_000_000_000, 1] {
        let port = quiet_port(TOOL, pid);
        assert!(!claimed(port));
        assert_eq!(holders_for(pid), 0);
    }
    // Claims off: Python's tool, no holder.
    let owner = sleeper();
    let out = run_bounded(
        tool_command(TOOL)
            .arg(owner.pid().to_string())
            .env(portpick::CLAIMS_ENV, "off"),
    );
    assert!(!claimed(printed_port(&out)));
    assert_eq!(holders_for(owner.pid()), 0);
    // One holder per call, each with its claim; all gone with the owner.
    let mut owner = sleeper();
    let ports: Vec<u16> = (0..5).map(|_| quiet_port(TOOL, owner.pid())).collect();
    assert_eq!(holders_for(owner.pid()), 5);
    assert!(ports.iter().all(|&p| claimed(p)));
    owner.kill();
    assert!(eventually(|| holders_for(owner.pid()) == 0));
    assert!(ports.iter().all(|&p| !claimed(p)));
    // A dead owner with BIND_TIMEOUT: the holder keeps the binds only.
    let pid = dead_pid();
    let out = run_bounded(tool_command(TOOL).args([&pid.to_string(), "0.5"]));
    let port = printed_port(&out);
    assert!(!portpick::is_port_free(port));
    assert!(eventually(|| holders_for(pid) == 0));
    assert!(portpick::is_port_free(port));
}

#[test]
fn the_holder_keeps_none_of_the_callers_streams() {
    use std::io::Read;
    let _turn = claims_turn();
    let owner = sleeper();
    // As `$(portpicker $$ 2>&1)` with a live owner: both pipes reach EOF
    // when the call exits, although its holder lives on.
    let mut child = tool_command(TOOL)
        .arg(owner.pid().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx2.send(text);
    });
    let first = rx.recv_timeout(PATIENCE).expect("a stream stayed open");
    let second = rx.recv_timeout(PATIENCE).expect("a stream stayed open");
    assert!(child.wait().unwrap().success());
    let port: u16 = format!("{first}{second}").trim().parse().unwrap();
    assert_eq!(holders_for(owner.pid()), 1);
    assert!(claimed(port));
}

#[test]
fn a_warning_is_shown_once() {
    let _turn = claims_turn();
    let owner = sleeper();
    let out = run_bounded(
        tool_command(TOOL)
            .arg(owner.pid().to_string())
            .env(portpick::CLAIMS_ENV, "bogus"),
    );
    let port = printed_port(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\"bogus\""), "{err}");
    assert!(claimed(port));
}

/// Waits (bounded) until `pid` is blocked writing to a pipe.
fn blocked_in_pipe_write(pid: u32) -> bool {
    eventually(|| {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("pipe_write"))
    })
}

#[test]
fn a_caller_that_dies_before_printing_leaves_no_holder() {
    use std::os::unix::process::CommandExt;
    let _turn = claims_turn();
    // Under qemu-user, wchan is the emulator's; where the kernel hides it,
    // a sleeping process's /proc/PID/wchan is `0` too: then the caller's
    // state cannot be seen.
    let asleep = sleeper();
    let shown = eventually(|| {
        std::fs::read_to_string(format!("/proc/{}/wchan", asleep.pid()))
            .is_ok_and(|w| !w.trim().is_empty() && w.trim() != "0")
    });
    if emulated() || !shown {
        eprintln!("skipped: /proc/PID/wchan cannot tell a caller blocked in printing");
        return;
    }
    // SIGKILL, and ^C: SIGINT to the caller's process group.
    for signal in ["-KILL", "-INT"] {
        let owner = sleeper();
        // The caller's stdout is a pipe filled (64 KiB, Linux's default
        // size) before it starts and never read: it has its holder's
        // answer and blocks in printing it.
        let mut caller = Command::new("sh");
        caller
            .args(["-c", r#"head -c 65536 /dev/zero && exec "$0" "$1""#, TOOL])
            .arg(owner.pid().to_string())
            .env_remove("PORTSERVER_ADDRESS")
            .env_remove(portpick::CLAIMS_ENV)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut caller = Reaper(caller.spawn().unwrap());
        assert!(
            blocked_in_pipe_write(caller.pid()),
            "the caller did not block in printing"
        );
        let holders = holder_pids(owner.pid());
        assert_eq!(holders.len(), 1);
        let ports = claims_held_by(holders[0]);
        assert_eq!(ports.len(), 1, "{ports:?}");
        let target = match signal {
            "-INT" => format!("-{}", caller.pid()),
            _ => caller.pid().to_string(),
        };
        let killed = Command::new("kill")
            .args([signal, "--", &target])
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = caller.0.wait();
        assert!(
            eventually(|| holders_for(owner.pid()) == 0),
            "a holder outlived a caller killed ({signal}) before it printed"
        );
        assert!(ports.iter().all(|&p| !claimed(p)));
    }
}

#[test]
fn seven_thousand_ports_are_claimed_by_one_holder() {
    let _turn = claims_turn();
    let owner = sleeper();
    // A descriptor per claim, and claims take at most half the limit:
    // room for them, whatever the host's default.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=16384:16384", TOOL])
        .arg(owner.pid().to_string())
        // Above the test servers' pools (tests/support/ports.rs: from
        // 25000 to the ephemeral range), which a server skips when claimed.
        .args(["--count", "7000", "--range", "40000-60000"])
        .env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    let out = run_bounded(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.is_empty(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let ports: std::collections::BTreeSet<u16> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!((text.lines().count(), ports.len()), (7000, 7000));
    let holders = holder_pids(owner.pid());
    assert_eq!(holders.len(), 1);
    assert_eq!(claims_held_by(holders[0]), ports);
    // 7,000 claims are not left to the tests that run next.
    let pid = owner.pid();
    drop(owner);
    assert!(eventually(|| holder_pids(pid).is_empty()));
}
