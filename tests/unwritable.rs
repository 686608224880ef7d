//! Output that cannot be written (issue 17, finding 8): a real `/dev/full`
//! and a real pipe whose reader has gone. The tool exits with its
//! documented statuses (1: the port could not be printed; 2: bad
//! arguments), never 101 with a panic, and the library's warnings never
//! fail the program that calls it.
#![cfg(target_os = "linux")]

mod support;

use std::fs::{File, OpenOptions};
use std::process::{Command, Output, Stdio};

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

fn tool() -> Command {
    let mut cmd = Command::new(TOOL);
    cmd.env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV)
        .stdin(Stdio::null());
    cmd
}

fn dev_full() -> File {
    OpenOptions::new().write(true).open("/dev/full").unwrap()
}

/// The write end of a pipe whose only reader has exited.
fn closed_pipe() -> Stdio {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
    let write_end = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    Stdio::from(write_end)
}

/// Runs `cmd` (its streams already set) to the end, bounded.
fn finish(cmd: &mut Command) -> Output {
    wait_output(cmd.spawn().unwrap(), PATIENCE)
}

#[test]
fn a_port_that_cannot_be_printed_exits_1_and_its_holder_goes() {
    let _turn = claims_turn();
    let owner = sleeper();
    let pid = owner.pid().to_string();
    for (what, stdout) in [
        ("/dev/full", Stdio::from(dev_full())),
        ("a closed pipe", closed_pipe()),
    ] {
        let out = finish(tool().arg(&pid).stdout(stdout).stderr(Stdio::piped()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "into {what}: {err}");
        assert!(err.contains("cannot write to stdout"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // The holder is killed: no claim outlives a port nobody saw.
        assert_eq!(holders_for(owner.pid()), 0, "into {what}");
    }
    // With BIND_TIMEOUT too, nothing stays bound or claimed.
    let out = finish(
        tool()
            .args([&pid, "30"])
            .stdout(dev_full())
            .stderr(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(holders_for(owner.pid()), 0);
}

#[test]
fn usage_and_help_into_unwritable_streams() {
    let out = finish(
        tool()
            .arg("notapid")
            .stdout(Stdio::null())
            .stderr(dev_full()),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = finish(
        tool()
            .arg("--help")
            .stdout(dev_full())
            .stderr(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(1));
    let out = finish(
        tool()
            .arg("--help")
            .stdout(closed_pipe())
            .stderr(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(1));
    // A port printed, a warning lost: still a port, exit 0.
    let out = finish(
        tool()
            .arg("1")
            .env("PORTSERVER_ADDRESS", unique_address("nobody-there"))
            .stdout(Stdio::piped())
            .stderr(dev_full()),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .is_ok());
}

/// Child mode: the library warns (a portserver that is not there, a
/// claims switch it does not know) while stderr is `/dev/full`.
#[test]
#[ignore = "run with stderr on /dev/full by the test below"]
fn warning_child() {
    if !is_child("warning_child") {
        return;
    }
    let port = portpick::pick_unused_port().unwrap();
    println!("PORT {port}");
}

#[test]
fn the_librarys_warnings_never_fail_the_caller() {
    let _turn = claims_turn();
    let out = finish(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "warning_child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, "warning_child")
            .env("PORTSERVER_ADDRESS", unique_address("nobody-there"))
            .env(portpick::CLAIMS_ENV, "sometimes")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(dev_full()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("PORT "), "{text}");
}
