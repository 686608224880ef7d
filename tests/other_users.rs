//! Another user cannot steer, drain or stall root's lasting claims (issue
//! 17, findings 1 to 3): as user `nobody`, a squatter on the old shared
//! helper's name, a flood of its requests, and a caller that never reads
//! its answers. Each runs in a fresh network namespace, so that no other
//! test's helper or holder is there (the old helper was one per network
//! namespace).
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

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
    if std::env::var_os("PORTPICK_FLOOD_STALL").is_some() {
        return stall(&request, &to);
    }
    let mut answered = 0;
    let mut buf = [0u8; 64];
    for _ in 0..var("PORTPICK_FLOOD_COUNT").parse::<usize>().unwrap() {
        if me.send_to_addr(request.as_bytes(), &to).is_ok() && me.recv(&mut buf).is_ok() {
            answered += 1;
        }
    }
    println!("FLOODED {answered}");
}

/// Sends `request` to `to` from 64 sockets that never read an answer, on
/// and on (until killed): the old helper waited 100 ms for each reply it
/// could not deliver.
fn stall(request: &str, to: &std::os::unix::net::SocketAddr) {
    for i in 0..64 {
        let name = format!("portpick-test-stall-{}-{i}", std::process::id());
        let me = abstract_socket(&name).unwrap();
        me.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (request, to) = (request.to_string(), to.clone());
        std::thread::spawn(move || loop {
            if me.send_to_addr(request.as_bytes(), &to).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    println!("STALLING");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Child mode, in a fresh network namespace: finding 3 of issue 17.
#[test]
#[ignore = "run in a fresh network namespace by the test below"]
fn stall_child() {
    if !is_child("stall_child") {
        return;
    }
    let Some(nobody) = ForNobody::new(TOOL) else {
        println!("stall_child OK (skipped)");
        return;
    };
    let owner = sleeper();
    // Root's first call (the old design started its shared helper here).
    let before = quiet_port(TOOL, owner.pid());
    let mut staller = nobody.child(
        "flooder",
        &[
            ("PORTPICK_FLOOD_NAME", old_helper_name(0)),
            ("PORTPICK_FLOOD_PID", "1".to_string()),
            ("PORTPICK_FLOOD_START", start_time(1).to_string()),
            ("PORTPICK_FLOOD_STALL", "1".to_string()),
        ],
    );
    wait_for_line(&mut staller, "STALLING");
    // Root's next calls still get ports claimed for the owner's life.
    let after: Vec<u16> = (0..5).map(|_| quiet_port(TOOL, owner.pid())).collect();
    std::thread::sleep(Duration::from_millis(600));
    assert!(claimed(before) && after.iter().all(|&p| claimed(p)));
    println!("stall_child OK");
}

#[test]
fn another_user_who_never_reads_stalls_nothing() {
    let _turn = claims_turn();
    in_fresh_netns("stall_child");
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
    let before = printed_port(&out);
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
