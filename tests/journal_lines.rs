//! Reading a journal line by line: CRLF line endings lose nothing, and a
//! journal with lines that cannot be read is copied aside (`STATE.unreadable`)
//! before it is rewritten, with the count logged.
#![cfg(target_os = "linux")]

mod support;

use std::path::Path;

use support::*;

fn args(address: &str, ports: &[u16], state: &Path) -> Vec<String> {
    let ranges: Vec<String> = ports.iter().map(|p| format!("{p}-{p}")).collect();
    vec![
        format!("--portserver_address={address}"),
        format!("--portserver_static_pool={}", ranges.join(",")),
        format!("--portserver_state_file={}", state.display()),
    ]
}

fn start(address: &str, ports: &[u16], state: &Path) -> ServerProcess {
    let args = args(address, ports, state);
    let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    ServerProcess::start(address, &args)
}

#[test]
fn a_crlf_journal_restores_every_entry() {
    let dir = TempDir::new("crlf");
    let state = dir.path().join("state");
    let ports = pool_ports(3);
    let owner = sleeper();
    let st = start_time(owner.pid());
    let mut text = String::from("portpick-state 1\r\n");
    for port in &ports[..2] {
        text.push_str(&format!("{port} {} {st}\r\n", owner.pid()));
    }
    std::fs::write(&state, text).unwrap();

    let address = unique_address("crlf");
    let server = start(&address, &ports, &state);
    assert!(
        server.wait_for_log("restored 2 reservations"),
        "{}",
        server.log_text()
    );
    assert!(
        !server.log_text().contains("skipping"),
        "{}",
        server.log_text()
    );
    let other = sleeper();
    assert_eq!(ask(&address, other.pid()), Some(ports[2]));
    assert_eq!(ask(&address, other.pid()), None);
    // Nothing was unreadable, so nothing was copied aside.
    assert!(!dir.path().join("state.unreadable").exists());
}

#[test]
fn a_journal_with_unreadable_lines_is_copied_before_the_rewrite() {
    let dir = TempDir::new("unreadable");
    let state = dir.path().join("state");
    let ports = pool_ports(2);
    let owner = sleeper();
    let st = start_time(owner.pid());
    let text = format!(
        "portpick-state 1\n{} {} {st}\n{} {} {st} trailing\n\u{0}garbage\n",
        ports[0],
        owner.pid(),
        ports[1],
        owner.pid()
    );
    std::fs::write(&state, &text).unwrap();

    let address = unique_address("unreadable");
    let server = start(&address, &ports, &state);
    let copy = dir.path().join("state.unreadable");
    assert!(
        server.wait_for_log("2 unreadable lines"),
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains(&copy.display().to_string()),
        "names the copy: {}",
        server.log_text()
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), text);
    // The journal was rewritten without them.
    let now = std::fs::read_to_string(&state).unwrap();
    assert_eq!(now.lines().count(), 2, "{now}");

    // A later start with an unreadable line again replaces the old copy.
    drop(server);
    let again = format!("{now}not a line\n");
    std::fs::write(&state, &again).unwrap();
    let server = start(&address, &ports, &state);
    assert!(
        server.wait_for_log("1 unreadable lines"),
        "{}",
        server.log_text()
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), again);
}

/// When the copy cannot be written, the journal is not rewritten either:
/// the server does not start, and the file is left as it was.
#[test]
fn a_journal_whose_unreadable_lines_cannot_be_copied_is_left_alone() {
    let dir = TempDir::new("unreadable");
    let state = dir.path().join("state");
    let ports = pool_ports(1);
    let text = "portpick-state 1\nnot a line\n";
    std::fs::write(&state, text).unwrap();
    // Something that is not ours where the copy's temporary file goes.
    std::fs::create_dir(dir.path().join("state.unreadable.tmp")).unwrap();

    let args = args(&unique_address("unreadable"), &ports, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_portserver(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("state.unreadable.tmp"), "{err}");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), text);
}
