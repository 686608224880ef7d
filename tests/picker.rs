//! The pick algorithm and its bookkeeping: real sockets check what it hands
//! out, small probers of our own drive it deterministically (the test kit's
//! scripted prober drives the rest: tests/kit/tests/picker.rs).
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

use portpick::{Picker, Prober, Protocol, Source};
use support::*;

/// Tests that use the process-wide picker take turns: one test's reserved
/// port must not be handed to another's pick.
static GLOBAL: Mutex<()> = Mutex::new(());

fn global_turn() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unclaimed<P: Prober>(p: P) -> Picker<P> {
    Picker::with_prober(p).ignore_environment().claims(false)
}

#[test]
fn no_repeats_over_a_thousand_picks() {
    let picker = Picker::new().ignore_environment().claims(false);
    let mut seen = BTreeSet::new();
    for i in 0..1000 {
        let port = picker.pick_unused_port().unwrap();
        assert!(seen.insert(port), "port {port} repeated at pick {i}");
    }
    assert_eq!(picker.outstanding().len(), 1000);
    for port in seen {
        assert!(picker.return_port(port));
    }
}

#[test]
fn a_picked_port_binds_tcp_and_udp_on_v4_and_v6() {
    // Claimed, so no other portpick picker takes it; a program outside
    // portpick (another test's bind(0)) still may, between the pick and our
    // binds: such a port is skipped, and three in a row is a failure.
    let picker = Picker::new().ignore_environment();
    let ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let mut lost = Vec::new();
    for _ in 0..3 {
        let port = picker.pick_unused_port().unwrap();
        let v4 = TcpListener::bind(("127.0.0.1", port));
        let u4 = UdpSocket::bind(("127.0.0.1", port));
        let v6 = ipv6.then(|| TcpListener::bind(("::1", port)));
        let u6 = ipv6.then(|| UdpSocket::bind(("::1", port)));
        let all = v4.is_ok()
            && u4.is_ok()
            && v6.as_ref().map_or(true, Result::is_ok)
            && u6.as_ref().map_or(true, Result::is_ok);
        drop((v4, u4, v6, u6));
        assert!(picker.return_port(port));
        if all {
            return;
        }
        lost.push(port);
    }
    panic!("ports {lost:?} were picked but could not be bound on every family");
}

/// Runs the ignored test `name` of this binary in a child process without
/// `PORTSERVER_ADDRESS`. The free functions use the process-wide picker,
/// which asks the portserver the environment names: a test suite run on a
/// host with one must not drain it.
fn without_a_portserver(name: &str) {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--test-threads=1"])
        .env_remove("PORTSERVER_ADDRESS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, 3 * PATIENCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_free_functions_work_from_many_threads() {
    without_a_portserver("free_functions_from_many_threads");
}

#[test]
#[ignore = "run without PORTSERVER_ADDRESS by the_free_functions_work_from_many_threads"]
fn free_functions_from_many_threads() {
    let _turn = global_turn();
    let ports: Vec<u16> = in_threads(4, |_| {
        (0..25)
            .map(|_| portpick::pick_unused_port().unwrap())
            .collect()
    });
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 100);
    for p in ports {
        assert!(portpick::return_port(p));
    }
}

#[test]
fn bound_socket_functions() {
    let tcp = portpick::bind_unused_tcp().unwrap();
    let port = tcp.local_addr().unwrap().port();
    assert!(port > 0);
    assert!(!portpick::is_port_free(port));
    let udp = portpick::bind_unused_udp().unwrap();
    let uport = udp.local_addr().unwrap().port();
    assert!(!portpick::is_port_free(uport));
    drop((tcp, udp));
}

#[test]
fn a_portserver_first_then_local_fallback() {
    let ports = pool_ports(1);
    let (address, server) = embedded(&ports);
    let picker = Picker::new().ignore_environment().claims(false);
    // A child owns the port, not this process: qemu-user answers a
    // process's reads of its own /proc/PID/stat with a start time per
    // thread, so the in-process server would see its owner change.
    let owner = sleeper();
    let me = owner.pid();
    assert_eq!(
        picker.pick_with_source(Some(me), Some(&address)),
        Ok((ports[0], Source::PortServer))
    );
    // The pool is empty now: Python's behaviour, a local pick.
    let (port, source) = picker.pick_with_source(Some(me), Some(&address)).unwrap();
    assert_eq!(source, Source::Local);
    assert_ne!(port, ports[0]);
    // Returning a portserver port makes it reusable in this process.
    assert!(picker.return_port(ports[0]));
    assert_eq!(
        picker.pick_with_source(Some(me), Some(&address)),
        Ok((ports[0], Source::Reserved))
    );
    server.stop();
    // Unreachable server: still a port, and soon.
    let (_, source) = picker.pick_with_source(Some(me), Some(&address)).unwrap();
    assert_eq!(source, Source::Local);
}

#[test]
fn kernel_port_zero_or_none_is_skipped() {
    struct ZeroThenNone(Mutex<u32>);
    impl Prober for ZeroThenNone {
        fn is_free(&self, port: u16, _: Protocol) -> bool {
            assert_ne!(port, 0, "port 0 was probed");
            true
        }
        fn kernel_port(&self, _: Protocol) -> Option<u16> {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            match *n {
                1..=5 => Some(0),
                6..=9 => None,
                _ => Some(30005),
            }
        }
    }
    let picker = unclaimed(ZeroThenNone(Mutex::new(0)));
    assert_eq!(picker.pick_unused_port(), Ok(30005));
}

#[test]
fn busy_random_ports_are_skipped_and_the_seed_decides() {
    /// No kernel ports; random ports are busy on TCP or UDP by parity
    /// (odd: TCP busy; multiples of 4: UDP busy).
    struct Parity(Mutex<Vec<(u16, Protocol)>>);
    impl Prober for Parity {
        fn is_free(&self, port: u16, proto: Protocol) -> bool {
            self.0.lock().unwrap().push((port, proto));
            match proto {
                // Masks, not `is_multiple_of` (Rust 1.87).
                Protocol::Tcp => port & 1 == 0,
                Protocol::Udp => port & 3 != 0,
            }
        }
        fn kernel_port(&self, _: Protocol) -> Option<u16> {
            None
        }
    }
    let run = |seed: u64| {
        let picker = unclaimed(Parity(Mutex::new(Vec::new()))).seed(seed);
        let ports: Vec<u16> = (0..20)
            .filter_map(|_| picker.pick_unused_port().ok())
            .collect();
        for &p in &ports {
            assert!((15000..25000).contains(&p) && p % 4 == 2, "{p}");
        }
        let asked = picker.prober().0.lock().unwrap().clone();
        (ports, asked)
    };
    let (a, asked) = run(3);
    assert!(
        a.len() >= 15,
        "only {} of 20 picks found a port: {a:?}",
        a.len()
    );
    // Probed on UDP only when free on TCP.
    assert!(asked
        .iter()
        .all(|&(p, proto)| proto == Protocol::Tcp || p % 2 == 0));
    let distinct: BTreeSet<u16> = a.iter().copied().collect();
    assert_eq!(distinct.len(), a.len(), "{a:?}");
    assert_eq!(run(3).0, a, "same seed, same ports");
    assert_ne!(run(4).0, a, "another seed, other ports");
}

#[test]
fn no_repeats_over_a_thousand_picks_of_the_global_picker() {
    let _turn = global_turn();
    without_a_portserver("a_thousand_picks_of_the_global_picker");
}

#[test]
#[ignore = "run without PORTSERVER_ADDRESS by no_repeats_over_a_thousand_picks_of_the_global_picker"]
fn a_thousand_picks_of_the_global_picker() {
    let mut seen = BTreeSet::new();
    for i in 0..1000 {
        let port = portpick::pick_unused_port().unwrap();
        assert!(seen.insert(port), "port {port} repeated at pick {i}");
    }
    for port in seen {
        assert!(portpick::return_port(port));
    }
}

/// Whether a fresh `[::]` socket here also takes IPv4 (`None`: no IPv6).
fn dual_stack() -> Option<bool> {
    let probe = TcpListener::bind("[::]:0").ok()?;
    // Deprecated only because its setter is useless after bind.
    #[allow(deprecated)]
    let only = probe.only_v6().unwrap();
    Some(!only)
}

#[test]
fn bound_sockets_serve_ipv4_and_ipv6_where_one_socket_can() {
    use std::io::{ErrorKind, Read, Write};
    // IPv4 always. IPv6 too when one socket can take both families; with
    // IPv6-only sockets (net.ipv6.bindv6only=1) the socket is IPv4 and a
    // client dialing ::1 must be refused (then try 127.0.0.1), not left
    // hanging on a second listener.
    let serves_v6 = dual_stack() == Some(true);
    let v6_exists = TcpListener::bind("[::1]:0").is_ok();
    let tcp = portpick::bind_unused_tcp().unwrap();
    let port = tcp.local_addr().unwrap().port();
    assert_eq!(tcp.local_addr().unwrap().is_ipv6(), serves_v6);
    let mut targets = vec!["127.0.0.1"];
    if v6_exists && serves_v6 {
        targets.push("::1");
    }
    for host in &targets {
        let mut c = std::net::TcpStream::connect((*host, port)).unwrap();
        let (mut s, _) = tcp.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping", "via {host}");
    }
    if v6_exists && !serves_v6 {
        let refused = std::net::TcpStream::connect(("::1", port)).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    }
    let udp = portpick::bind_unused_udp().unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(udp.local_addr().unwrap().is_ipv6(), serves_v6);
    let uport = udp.local_addr().unwrap().port();
    for host in &targets {
        let any = if host.contains(':') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let c = UdpSocket::bind(any).unwrap();
        c.send_to(b"pong", (*host, uport)).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong", "via {host}");
    }
}

#[test]
fn the_free_function_with_a_portserver_and_a_pid() {
    let _turn = global_turn();
    // Ports that other tests gave back to the process-wide picker come
    // first: out of the way (taken from the reserve, never from a server).
    while !portpick::__private::global().reserved().is_empty() {
        let _ = portpick::pick_unused_port();
    }
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let owner = sleeper();
    let got = portpick::pick_unused_port_for(Some(owner.pid()), Some(&address)).unwrap();
    assert!(ports.contains(&got), "{got} not from {ports:?}");
    // A pid the server will not serve (dead): a local port instead.
    let local = portpick::pick_unused_port_for(Some(dead_pid()), Some(&address)).unwrap();
    assert!(
        !ports.contains(&local),
        "{local} from the pool for a dead pid"
    );
    assert!(portpick::return_port(got));
    assert!(portpick::return_port(local));
    // The portserver port is now reserved in this process: handed out
    // first, without asking the server.
    assert_eq!(
        portpick::pick_unused_port_for(None, Some(&address)),
        Ok(got)
    );
    assert!(portpick::return_port(got));
}
