//! The tool's lasting claims on a shared host (issue 17): each call's own
//! holder keeps its claims private. Another user cannot choose, drain or
//! stall them (no name to squat, no protocol), one job's cleanup ends that
//! job's claims only, and a process limit gives one warning and a port.
//!
//! The tests that meet the old shared helper's name run in a fresh network
//! namespace, so that no other test's helper or holder is there.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

fn tool(path: &str) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    cmd
}

fn port_of(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().parse().unwrap()
}

/// A call for `pid` that gets a port silently (no warning).
fn quiet_port(path: &str, pid: u32) -> u16 {
    let out = run_bounded(tool(path).arg(pid.to_string()));
    let port = port_of(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    port
}

/// The name the old shared claim helper of user `uid` listened on (in
/// our pid namespace): what a squatter or a flood aimed at.
fn old_helper_name(uid: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    let pid_ns = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino());
    format!("portpick/helper/v1/{uid}/{pid_ns}")
}

fn abstract_socket(name: &str) -> std::io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    UnixDatagram::bind_addr(&addr)
}

/// Child mode, as nobody: binds `PORTPICK_SQUAT_NAME` and answers every
/// datagram with `PORTPICK_SQUAT_PORT`, as a hostile neighbour would.
#[test]
#[ignore = "run as nobody by the test below"]
fn squatter() {
    if !is_child("squatter") {
        return;
    }
    let name = std::env::var("PORTPICK_SQUAT_NAME").unwrap();
    let port = std::env::var("PORTPICK_SQUAT_PORT").unwrap();
    let socket = abstract_socket(&name).unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut buf = [0u8; 128];
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to_addr(port.as_bytes(), &from);
    }
}

/// Child mode, in a fresh network namespace: finding 1 of issue 17.
#[test]
#[ignore = "run in a fresh network namespace by the test below"]
fn squat_child() {
    if !is_child("squat_child") {
        return;
    }
    let Some(nobody) = ForNobody::new(TOOL) else {
        println!("squat_child OK (skipped)");
        return;
    };
    // The squatter offers a free port: a call that takes it gives every
    // caller the same port, claimed by nobody.
    let offered = pool_ports(1)[0];
    let mut squatter = nobody.child(
        "squatter",
        &[
            ("PORTPICK_SQUAT_NAME", old_helper_name(0)),
            ("PORTPICK_SQUAT_PORT", offered.to_string()),
        ],
    );
    wait_for_line(&mut squatter, "READY");
    let mut owner = sleeper();
    let first = quiet_port(TOOL, owner.pid());
    let second = quiet_port(TOOL, owner.pid());
    assert_ne!(first, offered, "the squatter chose root's port");
    assert_ne!(second, offered, "the squatter chose root's port");
    assert_ne!(first, second);
    // Claimed for the owner's life, past the calls' ends.
    std::thread::sleep(Duration::from_millis(600));
    assert!(claimed(first) && claimed(second));
    owner.kill();
    assert!(eventually(|| !claimed(first) && !claimed(second)));
    println!("squat_child OK");
}

#[test]
fn another_user_who_takes_the_old_helper_name_chooses_nothing() {
    let _turn = claims_turn();
    in_fresh_netns("squat_child");
}

/// Child mode, as nobody: sends `PORTPICK_FLOOD_COUNT` requests for
/// `PORTPICK_FLOOD_PID` (started at `PORTPICK_FLOOD_START`) to
/// `PORTPICK_FLOOD_NAME`, the old helper's protocol, and reads each answer
/// (briefly: nobody may be listening).
#[test]
#[ignore = "run as nobody by the test below"]
fn flooder() {
    if !is_child("flooder") {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let me = abstract_socket(&format!("portpick-test-flood-{}", std::process::id())).unwrap();
    me.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    me.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    use std::os::linux::net::SocketAddrExt;
    let to =
        std::os::unix::net::SocketAddr::from_abstract_name(var("PORTPICK_FLOOD_NAME")).unwrap();
    let request = format!(
        "portpick-helper-v1 {} {}",
        var("PORTPICK_FLOOD_PID"),
        var("PORTPICK_FLOOD_START")
    );
    let mut answered = 0;
    let mut buf = [0u8; 64];
    for _ in 0..var("PORTPICK_FLOOD_COUNT").parse::<usize>().unwrap() {
        if me.send_to_addr(request.as_bytes(), &to).is_ok() && me.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    println!("FLOODED {answered}");
}

/// Field 22 of `/proc/PID/stat`: the start time.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(19).unwrap().parse().unwrap()
}

/// Child mode, in a fresh network namespace: finding 2 of issue 17.
#[test]
#[ignore = "run in a fresh network namespace by the test below"]
fn flood_child() {
    if !is_child("flood_child") {
        return;
    }
    let Some(nobody) = ForNobody::new(TOOL) else {
        println!("flood_child OK (skipped)");
        return;
    };
    let owner = sleeper();
    // Root's first call, under the usual limit of 1024 open files (the old
    // design started its shared helper here, with that limit: a budget of
    // 512 claims).
    let out = run_bounded(
        Command::new("prlimit")
            .args(["--nofile=1024:1024", TOOL, &owner.pid().to_string()])
            .env_remove("PORTSERVER_ADDRESS")
            .env_remove(portpick::CLAIMS_ENV),
    );
    let before = port_of(&out);
    // 600 requests from another user, for init: the old helper's budget
    // was 512 claims.
    let mut flood = nobody.child(
        "flooder",
        &[
            ("PORTPICK_FLOOD_NAME", old_helper_name(0)),
            ("PORTPICK_FLOOD_PID", "1".to_string()),
            ("PORTPICK_FLOOD_START", start_time(1).to_string()),
            ("PORTPICK_FLOOD_COUNT", "600".to_string()),
        ],
    );
    let line = wait_for_line(&mut flood, "FLOODED");
    println!("{line}");
    // Root's next call still gets a port claimed for its owner's life.
    let after = quiet_port(TOOL, owner.pid());
    std::thread::sleep(Duration::from_millis(600));
    assert!(claimed(before) && claimed(after), "{before} {after}");
    drop(owner);
    assert!(eventually(|| !claimed(before) && !claimed(after)));
    println!("flood_child OK");
}

#[test]
fn another_users_flood_does_not_drain_the_claims() {
    let _turn = claims_turn();
    in_fresh_netns("flood_child");
}

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
    let mut call = tool(TOOL);
    in_job(call.arg(a.pid().to_string()), &job_a);
    port_of(&run_bounded(&mut call));
    let mut call = tool(TOOL);
    in_job(call.arg(b.pid().to_string()), &job_b);
    let port_b = port_of(&run_bounded(&mut call));
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
    let port = port_of(&out);
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
        tool(TOOL)
            .arg(owner.pid().to_string())
            .env(portpick::CLAIMS_ENV, "off"),
    );
    assert!(!claimed(port_of(&out)));
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
    let out = run_bounded(tool(TOOL).args([&pid.to_string(), "0.5"]));
    let port = port_of(&out);
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
    let mut child = tool(TOOL)
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
