//! `portpicker PID` without a portserver inside a pid namespace: the
//! lasting claim follows PID as the sandbox means it, also when the
//! sandbox sees the host's /proc (`unshare -pf` without `--mount-proc`),
//! where the same number names another process (pid 2 is `kthreadd`).
//! The sandbox's own pid 1 (`portpicker $$` from its shell) is an owner too.
//! Needs root (we are root here and in CI); says it skipped otherwise.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

const TOOL: &str = env!("CARGO_BIN_EXE_portpicker");

/// A sandbox made by `unshare --kill-child UNSHARE`, running `script` in
/// `sh` with the tool as `$0`, without a portserver or the claims variable:
/// (its stdin, its stdout's lines, the sandbox to reap), after the port it
/// printed first.
fn sandbox(unshare: &[&str], script: &str) -> (std::process::ChildStdin, u16, Reaper) {
    let mut child = Command::new("unshare")
        .arg("--kill-child")
        .args(unshare)
        .args(["sh", "-c", script, TOOL])
        .env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    let sandbox = Reaper(child);
    let port = lines.next("the sandbox printed no port").parse().unwrap();
    (stdin, port, sandbox)
}

/// In a sandbox made by `unshare --kill-child ARGS`: a `sleep`, `portpicker $!` for it,
/// then (when told) `kill -9` of the sleep. The claim holds while the sleep
/// lives and ends within the holder's sweep of its death.
fn the_claim_follows_the_sandboxed_owner(unshare: &[&str]) {
    if !can_unshare_pid() {
        return;
    }
    let _turn = claims_turn();
    let script =
        r#"sleep 300 & p=$!; "$0" "$p" || exit 1; read go; kill -9 "$p"; wait "$p"; read done"#;
    let (mut stdin, port, _sandbox) = sandbox(unshare, script);
    // The call has returned: its holder keeps the claim for the sleep.
    assert!(claimed(port), "port {port} is not claimed after the call");
    stdin.write_all(b"go\n").unwrap();
    assert!(
        eventually(|| !claimed(port)),
        "port {port} still claimed after its sandboxed owner was killed"
    );
    let _ = stdin.write_all(b"done\n");
}

#[test]
fn a_sandbox_with_its_own_proc() {
    the_claim_follows_the_sandboxed_owner(&["-pf", "--mount-proc"]);
}

#[test]
fn a_sandbox_that_sees_the_host_proc() {
    the_claim_follows_the_sandboxed_owner(&["-pf"]);
}

#[test]
fn a_sandbox_in_a_sandbox_that_sees_the_outer_proc() {
    the_claim_follows_the_sandboxed_owner(&[
        "-pf",
        "--mount-proc",
        "unshare",
        "--kill-child",
        "-pf",
    ]);
}

/// `portpicker $$` from the sandbox's own pid-1 shell: the claim holds
/// while the shell lives (a sandbox's pid 1 ends with it, unlike the
/// host's init) and ends when it exits.
fn the_sandbox_shell_owns_its_claim(unshare: &[&str]) {
    if !can_unshare_pid() {
        return;
    }
    let _turn = claims_turn();
    let (mut stdin, port, mut sandbox) = sandbox(unshare, r#""$0" $$ || exit 1; read go"#);
    assert!(
        claimed(port),
        "port {port} is not claimed for the sandbox's pid 1"
    );
    stdin.write_all(b"go\n").unwrap();
    let _ = sandbox.0.wait();
    assert!(
        eventually(|| !claimed(port)),
        "port {port} still claimed after the sandbox's pid 1 exited"
    );
}

#[test]
fn the_pid_1_shell_of_a_sandbox_with_its_own_proc() {
    the_sandbox_shell_owns_its_claim(&["-pf", "--mount-proc"]);
}

#[test]
fn the_pid_1_shell_of_a_sandbox_that_sees_the_host_proc() {
    the_sandbox_shell_owns_its_claim(&["-pf"]);
}
