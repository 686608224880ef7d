//! `is_port_free`, `bind` and `SocketProber` against real sockets, as
//! Python's `test_is_port_free` checks: a port held by any one of TCP/UDP x
//! IPv4/IPv6 (v6-only or dual-stack) is not free.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use portpick::{bind, Prober, Protocol, SocketProber};

fn has_ipv6() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A port nobody holds now, from the kernel.
fn fresh_port() -> u16 {
    portpick::Picker::new()
        .lock_dir(None::<&str>)
        .pick_unused_port()
        .unwrap()
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
