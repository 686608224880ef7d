//! `is_port_free`, `bind` and `SocketProber` against real sockets, as
//! Python's `test_is_port_free` checks: a port held by any one of TCP/UDP x
//! IPv4/IPv6 (v6-only or dual-stack) is not free.
#![cfg(unix)]

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};

use portpick::{bind, Prober, Protocol, SocketProber};

fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A port nobody holds now, below the kernel's ephemeral range (so no
/// `bind(0)` in a test running beside this one is handed it) and claimed
/// against other test processes: see `support::pool_ports`.
fn fresh_port() -> u16 {
    support::pool_ports(1)[0]
}

/// Whether /proc lists a TCP connection in TIME_WAIT on local `port`
/// (`None`: /proc/net is not readable here).
fn in_time_wait(port: u16) -> Option<bool> {
    let mut any_table = false;
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any_table = true;
        found |= text.lines().skip(1).any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next());
            local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && f.get(3) == Some(&"06")
        });
    }
    any_table.then_some(found)
}

// Held only to keep the socket open.
#[allow(dead_code)]
enum Holder {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

fn hold(addr: &str, port: u16, tcp: bool) -> Holder {
    let addr: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    if tcp {
        Holder::Tcp(TcpListener::bind(addr).unwrap())
    } else {
        Holder::Udp(UdpSocket::bind(addr).unwrap())
    }
}

#[test]
fn any_one_holder_makes_a_port_busy() {
    let mut cases = vec![
        ("127.0.0.1", true),
        ("0.0.0.0", true),
        ("127.0.0.1", false),
        ("0.0.0.0", false),
    ];
    if has_ipv6() {
        // [::1] is IPv6 only by its address; [::] is dual-stack by default.
        cases.extend([
            ("[::1]", true),
            ("[::]", true),
            ("[::1]", false),
            ("[::]", false),
        ]);
    }
    for (addr, tcp) in cases {
        let port = fresh_port();
        assert!(portpick::is_port_free(port), "{port} should start free");
        let holder = hold(addr, port, tcp);
        let what = if tcp { "TCP" } else { "UDP" };
        assert!(
            !portpick::is_port_free(port),
            "{port} held on {what} {addr} reported free"
        );
        let proto = if tcp { Protocol::Tcp } else { Protocol::Udp };
        assert!(!SocketProber.is_free(port, proto), "{what} {addr}");
        assert_eq!(bind(port, proto), None);
        drop(holder);
        assert!(
            portpick::is_port_free(port),
            "{port} free again after {what} {addr}"
        );
    }
}

#[test]
fn bind_returns_the_port_or_a_kernel_port() {
    let port = fresh_port();
    assert_eq!(bind(port, Protocol::Tcp), Some(port));
    assert_eq!(bind(port, Protocol::Udp), Some(port));
    let any = bind(0, Protocol::Tcp).unwrap();
    assert_ne!(any, 0);
    let any = bind(0, Protocol::Udp).unwrap();
    assert_ne!(any, 0);
}

#[test]
fn kernel_ports_are_bindable() {
    let port = SocketProber.kernel_port(Protocol::Tcp).unwrap();
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
    drop(l);
    let port = SocketProber.kernel_port(Protocol::Udp).unwrap();
    let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    drop(u);
}

#[test]
fn port_zero_is_never_free() {
    assert!(!portpick::is_port_free(0));
}

#[test]
fn a_holder_on_one_protocol_leaves_the_other_free() {
    let port = fresh_port();
    let tcp = TcpListener::bind(("0.0.0.0", port)).unwrap();
    assert!(!SocketProber.is_free(port, Protocol::Tcp));
    assert!(SocketProber.is_free(port, Protocol::Udp));
    assert_eq!(bind(port, Protocol::Udp), Some(port));
    drop(tcp);
    let udp = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    assert!(SocketProber.is_free(port, Protocol::Tcp));
    assert!(!SocketProber.is_free(port, Protocol::Udp));
    assert!(!portpick::is_port_free(port));
    drop(udp);
}

#[test]
fn bind_does_not_keep_the_port() {
    // Python's `bind` probes: the socket is closed before it returns.
    for proto in [Protocol::Tcp, Protocol::Udp] {
        let port = bind(0, proto).unwrap();
        assert_eq!(bind(port, proto), Some(port), "{proto:?}");
        assert_eq!(bind(port, proto), Some(port), "{proto:?} again");
    }
    let port = bind(0, Protocol::Tcp).unwrap();
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    drop(l);
    assert!(SocketProber.is_free(port, Protocol::Tcp));
}

#[test]
fn the_local_port_of_an_outgoing_connection_is_busy() {
    // A client socket bound by connect() holds its port too.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let port = client.local_addr().unwrap().port();
    assert!(!SocketProber.is_free(port, Protocol::Tcp));
    assert!(!portpick::is_port_free(port));
    drop((client, listener));
}

#[test]
fn a_port_in_time_wait_counts_as_free() {
    // As Python's portpicker (SO_REUSEADDR): connections that are closing
    // do not stop a new server from binding the port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    // The side that closes first keeps the connection in TIME_WAIT.
    drop(server_side);
    let mut buf = [0u8; 1];
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    assert_eq!(std::io::Read::read(&mut &client, &mut buf).unwrap(), 0);
    drop(client);
    drop(listener);
    // The test means something only if the connection is in TIME_WAIT.
    assert_ne!(in_time_wait(port), Some(false), "no TIME_WAIT on {port}");
    assert!(
        SocketProber.is_free(port, Protocol::Tcp),
        "port {port} in TIME_WAIT"
    );
    // And a server can bind it, as the probe promised.
    let again = TcpListener::bind(("127.0.0.1", port)).unwrap();
    drop(again);
}

#[test]
fn kernel_ports_are_free_and_usable_on_their_protocol() {
    for proto in [Protocol::Tcp, Protocol::Udp] {
        let port = SocketProber.kernel_port(proto).unwrap();
        assert_ne!(port, 0);
        // The probe socket is gone: the port is free for the caller.
        assert!(SocketProber.is_free(port, proto), "{proto:?} {port}");
    }
    // The trait's default: both protocols, and never port 0.
    assert!(!SocketProber.is_port_free(0));
    assert!(!SocketProber.is_free(0, Protocol::Tcp));
    assert!(!SocketProber.is_free(0, Protocol::Udp));
}

#[test]
fn a_port_from_pick_unused_port_binds_everywhere() {
    // Not the free function: it would ask the portserver PORTSERVER_ADDRESS
    // names, whose pool is not what this test is about.
    let picker = portpick::Picker::new().ignore_environment();
    let port = picker.pick_unused_port().unwrap();
    let mut held = vec![
        Holder::Tcp(TcpListener::bind(("0.0.0.0", port)).unwrap()),
        Holder::Udp(UdpSocket::bind(("0.0.0.0", port)).unwrap()),
    ];
    if has_ipv6() {
        // [::1] is v6-only by its address, so it coexists with 0.0.0.0.
        held.push(Holder::Tcp(TcpListener::bind(("::1", port)).unwrap()));
        held.push(Holder::Udp(UdpSocket::bind(("::1", port)).unwrap()));
    }
    drop(held);
    if has_ipv6() {
        // And alone, the dual-stack wildcard.
        let t = TcpListener::bind(("::", port)).unwrap();
        let u = UdpSocket::bind(("::", port)).unwrap();
        drop((t, u));
    }
    assert!(picker.return_port(port));
}
