//! The portserver client against fake servers written here: a good answer,
//! no answer, garbage, a slow or silent server, nobody listening.
#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portpick::{
    get_port_from_port_server_with_timeout as ask_with, PortServerAddress, PortServerError,
};
use support::*;

/// A one-connection server: reads the request line, then does `answer`.
/// Returns what it received.
fn fake(
    address: &str,
    answer: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
) -> JoinHandle<Vec<u8>> {
    let addr: PortServerAddress = address.parse().unwrap();
    let listener = UnixListener::bind_addr(&addr.to_socket_addr().unwrap()).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            got.push(byte[0]);
        }
        answer(&mut s);
        got
    })
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
    assert!(matches!(err, PortServerError::NoPort { .. }), "{err:?}");
    assert_eq!(server.join().unwrap(), b"stats\n");
}
