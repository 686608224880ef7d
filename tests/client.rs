//! The portserver client against fake servers written here: a good answer,
//! no answer, garbage, a slow or silent server, nobody listening.
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portpick::{
    get_port_from_port_server_with_timeout as ask_with, PortServerAddress, PortServerError,
};
use support::*;

fn fake(
    address: &str,
    answer: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> JoinHandle<Vec<u8>> {
    one_shot_server(address, answer)
}

/// Runs `f` on a thread and waits at most `PATIENCE` for it: a client that
/// hangs fails the test instead of hanging it.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what}: no result within {PATIENCE:?}"))
}

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn a_good_answer() {
    let address = unique_address("fake");
    let server = fake(&address, |s| s.write_all(b"23456\n").unwrap());
    assert_eq!(ask_with(&address, Some(4242), PATIENCE).unwrap(), 23456);
    assert_eq!(
        server.join().unwrap(),
        b"4242\n",
        "the request is PID and a newline"
    );
}

#[test]
fn our_pid_by_default() {
    let address = unique_address("fake");
    let server = fake(&address, |s| s.write_all(b"23456\n").unwrap());
    assert_eq!(
        portpick::get_port_from_port_server(&address, None).unwrap(),
        23456
    );
    assert_eq!(
        server.join().unwrap(),
        format!("{}\n", std::process::id()).as_bytes()
    );
}

#[test]
fn no_answer_is_no_port() {
    let address = unique_address("fake");
    let server = fake(&address, |_| {});
    let err = ask_with(&address, Some(4242), PATIENCE).unwrap_err();
    assert!(matches!(err, PortServerError::NoPort { .. }), "{err:?}");
    assert!(err.to_string().contains(&address), "{err}");
    server.join().unwrap();
    // "0" is Python's client's failure too.
    let address = unique_address("fake");
    let server = fake(&address, |s| s.write_all(b"0\n").unwrap());
    assert!(matches!(
        ask_with(&address, Some(4242), PATIENCE),
        Err(PortServerError::NoPort { .. })
    ));
    server.join().unwrap();
}

#[test]
fn garbage_is_a_bad_reply() {
    for garbage in [
        &b"hello\n"[..],
        b"70000\n",
        b"\xff\xff\n",
        &[b'9'; 100_000][..],
    ] {
        let address = unique_address("fake");
        let reply = garbage.to_vec();
        let server = fake(&address, move |s| {
            let _ = s.write_all(&reply);
        });
        let err = ask_with(&address, Some(4242), PATIENCE).unwrap_err();
        match &err {
            PortServerError::BadReply { reply, .. } => assert!(reply.len() <= 64),
            other => panic!("expected BadReply, got {other:?}"),
        }
        assert!(err.to_string().contains(&address), "{err}");
        server.join().unwrap();
    }
}

#[test]
fn a_silent_server_times_out() {
    let address = unique_address("fake");
    let server = fake(&address, |_| std::thread::sleep(Duration::from_secs(2)));
    let start = Instant::now();
    let err = ask_with(&address, Some(4242), SHORT).unwrap_err();
    assert!(matches!(err, PortServerError::Timeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    server.join().unwrap();
}

#[test]
fn a_trickling_server_is_cut_off() {
    let address = unique_address("fake");
    let server = fake(&address, |s| {
        for _ in 0..20 {
            if s.write_all(b"1").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    let err = ask_with(&address, Some(4242), SHORT).unwrap_err();
    assert!(matches!(err, PortServerError::Timeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn nobody_there_and_bad_addresses() {
    let address = unique_address("nobody");
    let err = ask_with(&address, Some(4242), SHORT).unwrap_err();
    assert!(matches!(err, PortServerError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&address));

    let dir = TempDir::new("client");
    let path = dir.path().join("missing.sock");
    let err = ask_with(path.to_str().unwrap(), Some(4242), SHORT).unwrap_err();
    assert!(matches!(err, PortServerError::Connect { .. }), "{err:?}");

    let err = ask_with("", Some(4242), SHORT).unwrap_err();
    assert!(
        matches!(err, PortServerError::InvalidAddress { .. }),
        "{err:?}"
    );
}

#[test]
fn a_path_address_works() {
    let dir = TempDir::new("client");
    let path = dir.path().join("fake.sock");
    let address = path.to_str().unwrap().to_string();
    let server = fake(&address, |s| s.write_all(b"23457\n").unwrap());
    assert_eq!(ask_with(&address, Some(4242), PATIENCE).unwrap(), 23457);
    server.join().unwrap();
}

#[test]
fn stats_from_a_real_server_and_from_one_without_the_extension() {
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let stats = portpick::get_port_server_stats(&address, PATIENCE).unwrap();
    assert_eq!(stats[0].0, "client-request-errors");
    // Python's server closes on `stats` without a word.
    let address = unique_address("fake");
    let server = fake(&address, |_| {});
    let err = portpick::get_port_server_stats(&address, PATIENCE).unwrap_err();
    // The error says so, rather than "gave no port".
    assert!(matches!(err, PortServerError::NoStats { .. }), "{err:?}");
    assert!(err.to_string().contains("answered no statistics"), "{err}");
    assert_eq!(server.join().unwrap(), b"stats\n");
}

#[test]
fn the_request_is_exactly_pid_and_newline() {
    for (pid, want) in [
        (Some(1u32), "1\n".to_string()),
        (Some(u32::MAX), format!("{}\n", u32::MAX)),
    ] {
        let address = unique_address("fake");
        let server = fake(&address, |s| s.write_all(b"23456\n").unwrap());
        assert_eq!(ask_with(&address, pid, PATIENCE).unwrap(), 23456);
        assert_eq!(String::from_utf8(server.join().unwrap()).unwrap(), want);
    }
}

#[test]
fn a_split_answer_is_put_together() {
    let address = unique_address("fake");
    let server = fake(&address, |s| {
        s.write_all(b"23").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"456\n").unwrap();
    });
    assert_eq!(ask_with(&address, Some(4242), PATIENCE).unwrap(), 23456);
    server.join().unwrap();
}

#[test]
fn an_answer_line_is_enough_without_the_close() {
    // Python's client takes the first line it receives; a server that
    // answers but holds the connection open still gave a port.
    let address = unique_address("fake");
    let server = fake(&address, |s| {
        s.write_all(b"23459\n").unwrap();
        std::thread::sleep(Duration::from_secs(1));
    });
    let got = bounded("ask", move || ask_with(&address, Some(4242), SHORT));
    assert_eq!(got.unwrap(), 23459);
    server.join().unwrap();
}

#[test]
fn a_server_that_hangs_up_unread_gave_no_port() {
    let address = unique_address("fake");
    let listener = listen(&address);
    let server = std::thread::spawn(move || {
        // Accept and close at once, the request unread (as a server that
        // refuses a client does).
        let (s, _) = listener.accept().unwrap();
        drop(s);
    });
    let err = ask_with(&address, Some(4242), PATIENCE).unwrap_err();
    assert!(matches!(err, PortServerError::NoPort { .. }), "{err:?}");
    server.join().unwrap();
}

#[test]
fn a_server_that_never_accepts_times_out() {
    // The connection is queued but never accepted: only the read waits.
    let address = unique_address("fake");
    let _listener = listen(&address);
    let a = address.clone();
    let err = bounded("ask", move || ask_with(&a, Some(4242), SHORT)).unwrap_err();
    assert!(matches!(err, PortServerError::Timeout { .. }), "{err:?}");
}

/// The kernel's cap on a listen backlog (`None` without `/proc/sys`, as in
/// a sandbox), and the open-file limit.
fn somaxconn_and_nofile() -> Option<(Option<usize>, usize)> {
    let max = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|m| m.trim().parse().ok());
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some((max, nofile))
}

/// A listener that never accepts, with its queue filled: the next unix
/// connect to it blocks until the queue has room (a portserver that
/// stopped, SIGSTOP or a stuck loop, with clients queued). The queue stays
/// full until the test process ends.
fn wedged_server(address: &str) -> UnixListener {
    let (known, nofile) = somaxconn_and_nofile().expect("cannot read the open-file limit");
    // Unknown, the cap's default since Linux 5.4: the filler stops where a
    // connect blocks, which is what a full queue is.
    let backlog = known.unwrap_or(4096);
    assert!(
        backlog + 1000 < nofile / 2,
        "filling a backlog of {backlog} needs more files than the limit {nofile} allows"
    );
    let listener = listen(address);
    let sa = address
        .parse::<PortServerAddress>()
        .unwrap()
        .to_socket_addr()
        .unwrap();
    // std listens with the largest backlog the kernel allows; the queue is
    // full once it holds one more than that. Fill it from a thread, which
    // reports how far it got, in case a connect blocks earlier.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..=backlog {
            held.push(UnixStream::connect_addr(&sa).unwrap());
            let _ = tx.send(held.len());
        }
        // Keep the queue full until the test process ends.
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
    });
    let mut filled = 0;
    let mut blocked = true;
    while let Ok(n) = rx.recv_timeout(Duration::from_secs(2)) {
        filled = n;
        if n == backlog + 1 {
            blocked = false;
            break;
        }
    }
    match known {
        Some(backlog) => assert!(filled >= backlog, "only {filled} connections queued"),
        // Full when a connect blocked, or at the default cap (a larger cap
        // would leave room, and the clients below would not time out).
        None => assert!(
            blocked || filled == backlog + 1,
            "the queue never filled ({filled})"
        ),
    }
    listener
}

#[test]
fn a_wedged_server_with_a_full_backlog_does_not_hang_its_clients() {
    // One wedged server for every client kind: each costs ~backlog files.
    let address = unique_address("wedged");
    let _listener = wedged_server(&address);

    let a = address.clone();
    let err = bounded("ask with a full backlog", move || {
        ask_with(&a, Some(4242), SHORT)
    })
    .unwrap_err();
    assert!(matches!(err, PortServerError::Timeout { .. }), "{err:?}");

    let a = address.clone();
    let err = bounded("stats with a full backlog", move || {
        portpick::get_port_server_stats(&a, SHORT)
    })
    .unwrap_err();
    assert!(matches!(err, PortServerError::Timeout { .. }), "{err:?}");

    // Many callers at once, more than the helper threads allowed to wait:
    // every one returns in time.
    let a = address.clone();
    let errs = bounded("20 asks at once", move || {
        in_threads(20, |_| vec![ask_with(&a, Some(4242), SHORT)])
    });
    assert!(errs
        .iter()
        .all(|r| matches!(r, Err(PortServerError::Timeout { .. }))));

    // Helpers stuck on the wedged server do not hold up another server's
    // clients.
    let good = unique_address("fake");
    let server = fake(&good, |s| s.write_all(b"23456\n").unwrap());
    let g = good.clone();
    let got = bounded("ask a good server", move || ask_with(&g, Some(4242), SHORT));
    assert_eq!(got.unwrap(), 23456);
    server.join().unwrap();

    // The library's pick falls back to a local port; the tool's stats say
    // the server did not answer (the default timeout: 5 s).
    let tool = |args: &[&str]| {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_portpicker"))
            .args(args)
            .env("PORTSERVER_ADDRESS", &address)
            .env("PORTPICK_CLAIMS", "off")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, PATIENCE)
    };
    let out = tool(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(port > 0);
    let out = tool(&["--stats"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer"), "{err}");
}

#[test]
fn errors_say_what_and_where() {
    let address = unique_address("fake");
    let server = fake(&address, |_| std::thread::sleep(Duration::from_secs(1)));
    let err = ask_with(&address, Some(4242), SHORT).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&address) && text.contains("did not answer"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_none());
    server.join().unwrap();

    let err = ask_with("", Some(4242), SHORT).unwrap_err();
    assert_eq!(err.to_string(), "invalid portserver address \"\"");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidInput
    );

    let nobody = unique_address("nobody");
    let err = ask_with(&nobody, Some(4242), SHORT).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot connect to portserver"),
        "{err}"
    );
    // The OS error is printed, not also returned as the source (a chain
    // printer would show it twice); it decides the io::ErrorKind.
    assert!(std::error::Error::source(&err).is_none());
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::ConnectionRefused
    );

    let address = unique_address("fake");
    let server = fake(&address, |s| s.write_all(b"hello\n").unwrap());
    let err = ask_with(&address, Some(4242), PATIENCE).unwrap_err();
    assert!(err.to_string().contains("\"hello\\n\""), "{err}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidData
    );
    server.join().unwrap();

    let address = unique_address("fake");
    let server = fake(&address, |_| {});
    let err = ask_with(&address, Some(4242), PATIENCE).unwrap_err();
    // The protocol has no word for why: the message says what it can be.
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("portserver {address:?} gave no port ("))
            && text.contains("quota")
            && text.contains("its log says which"),
        "{text}"
    );
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::NotFound
    );
    server.join().unwrap();
}

#[test]
fn stats_from_fake_servers() {
    let address = unique_address("fake");
    let server = fake(&address, |s| {
        s.write_all(b"b 2\na 1\n\nc 18446744073709551615\n")
            .unwrap()
    });
    let stats = portpick::get_port_server_stats(&address, PATIENCE).unwrap();
    assert_eq!(
        stats,
        vec![
            ("b".to_string(), 2),
            ("a".to_string(), 1),
            ("c".to_string(), u64::MAX)
        ]
    );
    assert_eq!(server.join().unwrap(), b"stats\n");

    for garbage in [&b"no-value\n"[..], b"a -1\n", b"a 1 2\n", b"\xff 1\n"] {
        let address = unique_address("fake");
        let reply = garbage.to_vec();
        let server = fake(&address, move |s| s.write_all(&reply).unwrap());
        let err = portpick::get_port_server_stats(&address, PATIENCE).unwrap_err();
        assert!(
            matches!(err, PortServerError::BadReply { .. }),
            "{garbage:?}: {err:?}"
        );
        server.join().unwrap();
    }

    let nobody = unique_address("nobody");
    assert!(matches!(
        portpick::get_port_server_stats(&nobody, SHORT),
        Err(PortServerError::Connect { .. })
    ));
}
