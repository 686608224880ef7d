//! The server's log: an output nobody reads never stops allocation, floods
//! of warnings are summed up, and a server built in code is quiet unless
//! something is wrong (or logs to the writer it is given).
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use portpick::server::{Level, PortServer, ServerConfig};
use support::*;

#[test]
fn an_unread_stderr_and_a_flood_of_bad_requests_do_not_stop_allocation() {
    let ports = pool_ports(1);
    let address = unique_address("log-flood");
    let mut cmd = Command::new(example_path("portserver"));
    cmd.arg(format!("--portserver_address={address}"))
        .arg(format!("--portserver_static_pool={0}-{0}", ports[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = Reaper(cmd.spawn().unwrap());
    // Held open and not read: the pipe fills after a few hundred lines.
    let stderr = server.0.stderr.take().unwrap();
    assert!(eventually(|| portpick::get_port_server_stats(
        &address,
        Duration::from_millis(200)
    )
    .is_ok()));

    let a = address.clone();
    let flood = std::thread::spawn(move || {
        for _ in 0..3000 {
            if let Ok(mut s) = connect(&a) {
                let _ = s.write_all(b"not a pid\n");
            }
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(flood.join());
    });
    rx.recv_timeout(PATIENCE)
        .expect("3,000 bad requests not sent in time")
        .unwrap();

    let owner = sleeper();
    let (tx, rx) = std::sync::mpsc::channel();
    let a = address.clone();
    std::thread::spawn(move || {
        let _ = tx.send(portpick::get_port_from_port_server_with_timeout(
            &a,
            Some(owner.pid()),
            Duration::from_secs(5),
        ));
        drop(owner);
    });
    let got = rx
        .recv_timeout(PATIENCE)
        .expect("the client hung")
        .expect("a good client got no port after a flood");
    assert_eq!(got, ports[0]);

    // The flood is in the log as a few lines and a count.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut parse_errors = 0;
    loop {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("no summary of the bad requests in the log");
        if line.contains("Could not parse request") && !line.contains("more like this") {
            parse_errors += 1;
        }
        if line.contains("more like this") {
            break;
        }
    }
    assert!(
        parse_errors < 3000,
        "{parse_errors} lines for 3,000 requests"
    );
}

#[test]
fn an_embedded_server_logs_nothing_at_its_default_level() {
    let out = LogBuf::default();
    let address = unique_address("log-quiet");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(pool_ports(1))
        .log_to(out.clone());
    assert_eq!(config.log_level, Level::Warning);
    let server = PortServer::new(config).start().unwrap();
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    assert_eq!(ask(&address, 1), None);
    assert!(!stats(&address).is_empty());
    server.stop();
    assert_eq!(out.text(), "");

    // Something wrong is said, to the writer given.
    let address = unique_address("log-quiet");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(pool_ports(1))
        .log_to(out.clone());
    let server = PortServer::new(config).start().unwrap();
    assert!(raw_request(&address, b"not a pid\n").is_empty());
    server.stop();
    assert!(
        out.text().contains("Could not parse request"),
        "{}",
        out.text()
    );

    // At Info, the start and the stop, all written by the time stop returns.
    let out = LogBuf::default();
    let address = unique_address("log-info");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(pool_ports(1))
        .log_level(Level::Info)
        .log_to(out.clone());
    PortServer::new(config).start().unwrap().stop();
    let text = out.text();
    assert!(text.contains(&format!("Serving on {address}")), "{text}");
    assert!(text.trim_end().ends_with("Goodbye."), "{text}");

    // Off: not even errors.
    let out = LogBuf::default();
    let address = unique_address("log-off");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(pool_ports(1))
        .log_level(Level::Off)
        .log_to(out.clone());
    let server = PortServer::new(config).start().unwrap();
    assert!(raw_request(&address, b"not a pid\n").is_empty());
    server.stop();
    assert_eq!(out.text(), "");
}

const CHILD: &str = "PORTPICK_TEST_LOG_CHILD";

/// Run by `an_embedded_server_at_defaults_writes_nothing_to_stderr` in a
/// child process of this test binary (it does nothing otherwise): a server
/// built with the defaults, used and stopped.
#[test]
fn child_embedded_server_at_defaults() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let address = unique_address("log-child");
    let config = ServerConfig::new(address.parse().unwrap()).ports(pool_ports(1));
    let server = PortServer::new(config).start().unwrap();
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    server.stop();
}

#[test]
fn an_embedded_server_at_defaults_writes_nothing_to_stderr() {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_embedded_server_at_defaults",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, PATIENCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn at_verbose_the_statistics_are_one_line_each_interval() {
    let out = LogBuf::default();
    let address = unique_address("log-summary");
    let mut config = ServerConfig::new(address.parse().unwrap())
        .ports(pool_ports(2))
        .log_level(Level::Verbose)
        .log_to(out.clone());
    config.stats_interval = Some(Duration::from_millis(20));
    let server = PortServer::new(config).start().unwrap();
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    let summary = "1 of 2 ports held by 1 owner";
    assert!(
        eventually(|| out.text().contains(summary)),
        "{}",
        out.text()
    );
    let text = out.text();
    server.stop();
    // Each statistic by name is for `portpicker --stats`, not the log.
    for name in ["num-ports-free", "total-allocations", "uptime-seconds"] {
        assert!(!text.contains(name), "{name} in the log:\n{text}");
    }
    let lines = text.lines().filter(|l| l.contains("] Last ")).count();
    assert!(
        lines > 0 && lines == text.matches("held by").count(),
        "{text}"
    );
}
