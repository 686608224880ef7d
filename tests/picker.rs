//! The pick algorithm and its bookkeeping: a scripted `Prober` drives it
//! deterministically; real sockets check what it hands out.

mod support;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

use portpick::{Picker, Prober, Protocol, Source};
use support::*;

/// Kernel ports come from a script; `busy` says which (port, protocol)
/// are in use. Every question is recorded.
#[derive(Default)]
struct Script {
    kernel: Mutex<VecDeque<u16>>,
    busy: Mutex<HashSet<(u16, Protocol)>>,
    asked: Mutex<Vec<(u16, Protocol)>>,
}

impl Script {
    fn new(kernel: &[u16]) -> Script {
        Script {
            kernel: Mutex::new(kernel.iter().copied().collect()),
            ..Script::default()
        }
    }
    fn busy(self, port: u16, proto: Protocol) -> Script {
        self.busy.lock().unwrap().insert((port, proto));
        self
    }
}

impl Prober for Script {
    fn is_free(&self, port: u16, proto: Protocol) -> bool {
        self.asked.lock().unwrap().push((port, proto));
        !self.busy.lock().unwrap().contains(&(port, proto))
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        self.kernel.lock().unwrap().pop_front()
    }
}

/// Every port busy on every protocol, and no kernel port.
struct Nothing;

impl Prober for Nothing {
    fn is_free(&self, _: u16, _: Protocol) -> bool {
        false
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        None
    }
}

fn no_locks<P: Prober>(p: P) -> Picker<P> {
    Picker::with_prober(p).lock_dir(None::<&str>)
}

#[test]
fn a_kernel_port_busy_on_udp_is_skipped() {
    let picker = no_locks(Script::new(&[30001, 30002]).busy(30001, Protocol::Udp));
    assert_eq!(picker.pick_unused_port(), Ok(30002));
    let asked = picker.prober().asked.lock().unwrap().clone();
    // The kernel vouched for TCP; only UDP is asked.
    assert_eq!(asked, vec![(30001, Protocol::Udp), (30002, Protocol::Udp)]);
}

#[test]
fn when_every_try_fails_a_typed_error() {
    let picker = no_locks(Nothing);
    let err = picker.pick_unused_port().unwrap_err();
    assert_eq!(err.tries(), 20);
    assert_eq!(err.to_string(), "no free port found after 20 candidates");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrNotAvailable);
}

#[test]
fn random_fallback_when_the_kernel_fails() {
    // No kernel ports at all: ten random ports in 15000..25000, each
    // checked on TCP and UDP.
    let picker = no_locks(Script::new(&[])).seed(7);
    let port = picker.pick_unused_port().unwrap();
    assert!((15000..25000).contains(&port));
    let asked = picker.prober().asked.lock().unwrap().clone();
    assert!(asked.contains(&(port, Protocol::Tcp)));
    assert!(asked.contains(&(port, Protocol::Udp)));
    // The same seed, the same pick.
    let again = no_locks(Script::new(&[])).seed(7);
    assert_eq!(again.pick_unused_port(), Ok(port));
}

#[test]
fn a_picked_port_is_not_picked_again_until_returned() {
    // The kernel offers the same port twice (as bind(0) may).
    let picker = no_locks(Script::new(&[30001, 30001, 30002, 30001]));
    assert_eq!(picker.pick_unused_port(), Ok(30001));
    assert_eq!(picker.pick_unused_port(), Ok(30002));
    assert!(picker.return_port(30001));
    assert_eq!(picker.pick_unused_port(), Ok(30001));
}

#[test]
fn reserved_owned_and_returned_bookkeeping() {
    let picker = no_locks(Script::new(&[30001]));
    picker.add_reserved_port(20000);
    picker.add_reserved_port(20001);
    assert_eq!(picker.reserved(), vec![20000, 20001]);
    // Reserved ports come first, without probing.
    assert_eq!(
        picker.pick_with_source(None, None),
        Ok((20000, Source::Reserved))
    );
    assert_eq!(picker.pick_unused_port(), Ok(20001));
    assert!(picker.reserved().is_empty());
    assert!(picker.prober().asked.lock().unwrap().is_empty());
    assert_eq!(
        picker.pick_with_source(None, None),
        Ok((30001, Source::Local))
    );
    assert_eq!(picker.outstanding(), vec![20000, 20001, 30001]);
    // Returning an owned (reserved) port makes it reusable.
    assert!(picker.return_port(20000));
    assert_eq!(picker.reserved(), vec![20000]);
    // Returning a local pick forgets it; an unknown port is nothing.
    assert!(picker.return_port(30001));
    assert!(!picker.return_port(30001));
    assert!(!picker.return_port(12345));
    assert_eq!(picker.outstanding(), vec![20001]);
}

#[test]
fn the_guard_returns_its_port() {
    let picker = no_locks(Script::new(&[30001, 30002]));
    {
        let guard = picker.pick_guard().unwrap();
        assert_eq!(guard.port(), 30001);
        assert_eq!(picker.outstanding(), vec![30001]);
    }
    assert!(picker.outstanding().is_empty());
    let kept = picker.pick_guard().unwrap().into_port();
    assert_eq!(kept, 30002);
    assert_eq!(picker.outstanding(), vec![30002]);
}

#[test]
fn no_repeats_over_a_thousand_picks() {
    let picker = Picker::new().lock_dir(None::<&str>);
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
    let picker = Picker::new().lock_dir(None::<&str>);
    let port = picker.pick_unused_port().unwrap();
    let ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let v4 = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let u4 = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    if ipv6 {
        let v6 = TcpListener::bind(("::1", port)).unwrap();
        let u6 = UdpSocket::bind(("::1", port)).unwrap();
        drop((v6, u6));
    }
    drop((v4, u4));
    assert!(picker.return_port(port));
}

#[test]
fn the_free_functions_work_from_many_threads() {
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
fn bound_socket_helpers() {
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
    let picker = Picker::new().lock_dir(None::<&str>);
    let me = std::process::id();
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
