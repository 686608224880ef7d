//! The tool's commands that pick nothing, as processes: `--wait PORT`
//! (0 once something listens, 1 on timeout, 2 for bad arguments) and
//! `--version` on both binaries, with stdout full too.
#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use portpick::__private::server::{parse_args, Command as ServerCommand};
use support::*;

fn tool() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portpicker"));
    cmd.env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    cmd
}

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portserver"))
}

/// An address where nothing can listen while the pair lives: the local
/// end of a connection.
fn refusing(ip: std::net::IpAddr) -> (u16, TcpListener, TcpStream) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (client.local_addr().unwrap().port(), listener, client)
}

#[test]
fn wait_exits_0_for_a_listener_on_either_loopback() {
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = v4.local_addr().unwrap().port().to_string();
    let out = run_bounded(tool().args(["--wait", &port, "--timeout", "10"]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
    let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
        eprintln!("skipped the ::1 half: no IPv6 loopback here");
        return;
    };
    let port = v6.local_addr().unwrap().port().to_string();
    let out = run_bounded(tool().args(["--timeout=10", "--wait", &port]));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // With --address, only that address counts.
    let out = run_bounded(tool().args([
        "--wait",
        &port,
        "--timeout",
        "0.2",
        "--address",
        "127.0.0.1",
    ]));
    // Something else may hold the port on 127.0.0.1 meanwhile; then 0.
    let taken = TcpStream::connect((Ipv4Addr::LOCALHOST, v6.local_addr().unwrap().port())).is_ok();
    if !taken {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
}

#[test]
fn wait_waits_for_a_listener_that_comes_later() {
    let spare = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr: SocketAddr = spare.local_addr().unwrap();
    drop(spare);
    let child = tool()
        .args(["--wait", &addr.port().to_string(), "--timeout", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(addr);
    let out = wait_output(child, PATIENCE * 2);
    // Another program may have taken the port meanwhile; then nothing to say.
    if listener.is_ok() {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
}

#[test]
fn wait_exits_1_on_timeout_naming_it() {
    let (port, _l, _c) = refusing(Ipv4Addr::LOCALHOST.into());
    let out = run_bounded(tool().args([
        "--wait",
        &port.to_string(),
        "--timeout",
        "0.3",
        "--address",
        "127.0.0.1",
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing listening on"), "{err}");
    assert!(err.contains("300ms"), "{err}");
}

#[test]
fn wait_with_bad_arguments_exits_2() {
    for args in [
        &["--wait"][..],
        &["--wait", "0"],
        &["--wait", "80", "--timeout", "x"],
        &["--wait", "80", "--address", "nowhere"],
        &["--wait", "80", "123"],
        &["--timeout", "1", "--wait", "80", "--count", "2"],
    ] {
        let out = run_bounded(tool().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    }
}

#[test]
fn version_on_both_binaries() {
    let version = env!("CARGO_PKG_VERSION");
    for (mut cmd, name) in [(tool(), "portpicker"), (server(), "portserver")] {
        for flag in ["--version", "-V"] {
            let out = run_bounded(cmd.arg(flag));
            assert_eq!(out.status.code(), Some(0), "{out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{name} {version}\n")
            );
            cmd = if name == "portpicker" {
                tool()
            } else {
                server()
            };
        }
    }
    assert_eq!(
        run_bounded(tool().arg("--version=1")).status.code(),
        Some(2)
    );
    assert_eq!(
        run_bounded(server().arg("--version=1")).status.code(),
        Some(2)
    );
    assert!(matches!(
        parse_args(["--version"]),
        Ok(ServerCommand::Version)
    ));
}

#[test]
fn version_to_a_full_stdout_exits_1() {
    for mut cmd in [tool(), server()] {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let child = cmd
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output(child, PATIENCE);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
    }
}
