//! The picker's options (range, exclude, address), its listeners, several
//! ports and blocks, and waiting for a listener: a fake prober where the
//! answers must be chosen, real sockets where the kernel must agree.
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use portpick::__private::fakes::FakeProber;
use portpick::{NoFreePortReason, Picker, Prober, Protocol, Source};
use support::*;

/// A picker on `prober` that meets no environment and no real claims.
fn fake(prober: FakeProber) -> Picker<FakeProber> {
    Picker::with_prober(prober)
        .ignore_environment()
        .claims_in(&format!("{}/", unique("opts")))
}

/// A real picker whose claims meet no other test's.
fn real() -> Picker {
    Picker::new()
        .ignore_environment()
        .claims_in(&format!("{}/", unique("opts")))
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn a_range_is_used_up_then_named_in_the_error() {
    let picker = fake(FakeProber::new().cycling(30000..30010)).range(31000..=31009);
    let got: BTreeSet<u16> = (0..10)
        .map(|_| picker.pick_unused_port().unwrap())
        .collect();
    assert_eq!(got, (31000..=31009).collect());
    let e = picker.pick_unused_port().unwrap_err();
    assert_eq!(e.reason(), NoFreePortReason::Busy);
    assert_eq!(e.range(), Some(31000..=31009));
    // 20 random tries, then the scan of all 10.
    assert_eq!(e.tries(), 30);
    assert_eq!(
        e.to_string(),
        "no free port found in 31000-31009 after 30 candidates"
    );
    // The kernel's ports lie outside the range: never asked for.
    assert!(picker.prober().kernel_asked().is_empty());
}

#[test]
fn the_scan_finds_the_one_free_port_of_a_small_range() {
    let prober = FakeProber::new().all_busy(true);
    let picker = fake(prober).range(40000..=44095);
    let e = picker.pick_unused_port().unwrap_err();
    assert_eq!(e.tries(), 20 + 4096);
    // One free port among 4,096: the random tries would miss it.
    let prober = (40000..=44095)
        .filter(|&p| p != 43210)
        .fold(FakeProber::new(), |f, p| {
            f.busy_on(p, Protocol::Tcp).busy_on(p, Protocol::Udp)
        });
    let picker = fake(prober).range(40000..=44095);
    assert_eq!(picker.pick_unused_port(), Ok(43210));
}

#[test]
fn a_large_full_range_fails_after_bounded_tries() {
    let picker = fake(FakeProber::new().all_busy(true)).range(1..=65535);
    let e = picker.pick_unused_port().unwrap_err();
    assert_eq!(e.tries(), 20);
    assert_eq!(e.range(), Some(1..=65535));
    // Port 0 is never in a range.
    let picker = fake(FakeProber::new()).range(0..=0);
    let e = picker.pick_unused_port().unwrap_err();
    assert_eq!(e.reason(), NoFreePortReason::TooMany);
}

#[test]
fn excluded_ports_are_never_handed_out() {
    // The kernel offers only excluded ports: random ones instead.
    let picker = fake(FakeProber::new().cycling(30000..30003)).exclude([30000, 30001, 30002]);
    for _ in 0..20 {
        let port = picker.pick_unused_port().unwrap();
        assert!(!(30000..30003).contains(&port), "{port}");
    }
    // With a range: what is left of it, then an error.
    let picker = fake(FakeProber::new())
        .range(31000..=31004)
        .exclude([31000, 31002])
        .exclude([31004]);
    let got: BTreeSet<u16> = (0..2).map(|_| picker.pick_unused_port().unwrap()).collect();
    assert_eq!(got, [31001, 31003].into());
    assert!(picker.pick_unused_port().is_err());
    // Everything excluded: known at once.
    let picker = fake(FakeProber::new()).range(5..=6).exclude([5, 6]);
    let e = picker.pick_unused_port().unwrap_err();
    assert_eq!((e.reason(), e.tries()), (NoFreePortReason::TooMany, 0));
    assert!(e.to_string().contains("5-6"), "{e}");
}

#[test]
fn reserved_ports_come_first_only_when_the_options_allow_them() {
    let picker = fake(FakeProber::new())
        .range(31000..=31009)
        .exclude([31005]);
    picker.add_reserved_port(20000);
    picker.add_reserved_port(31005);
    picker.add_reserved_port(31007);
    assert_eq!(
        picker.pick_with_source(None, None),
        Ok((31007, Source::Reserved))
    );
    let (port, source) = picker.pick_with_source(None, None).unwrap();
    assert_eq!(source, Source::Local);
    assert!((31000..=31009).contains(&port) && port != 31005 && port != 31007);
}

#[test]
fn options_skip_the_portserver() {
    let ports = pool_ports(2);
    let (address, _server) = embedded(&ports);
    let picker = real().portserver(Some(&address)).address(LOCALHOST);
    let (_, source) = picker.pick_with_source(None, None).unwrap();
    assert_eq!(source, Source::Local);
    let (_, source) = picker.pick_with_source(None, Some(&address)).unwrap();
    assert_eq!(source, Source::Local);
    // Without options the server is asked.
    let plain = real().portserver(Some(&address));
    let (port, source) = plain.pick_with_source(None, None).unwrap();
    assert_eq!(source, Source::PortServer);
    assert!(ports.contains(&port));
}

/// Answers from the address it is asked about: free only on 127.0.0.2.
struct OnlyOn(IpAddr);

impl Prober for OnlyOn {
    fn is_free(&self, _: u16, _: Protocol) -> bool {
        false
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        Some(30500)
    }
    fn is_free_on(&self, ip: IpAddr, _: u16, _: Protocol) -> bool {
        ip == self.0
    }
}

#[test]
fn the_address_reaches_the_prober() {
    let there: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
    let picker = Picker::with_prober(OnlyOn(there))
        .ignore_environment()
        .claims(false);
    assert!(picker.pick_unused_port().is_err());
    let picker = picker.address(there);
    assert_eq!(picker.pick_unused_port(), Ok(30500));
    // A prober without `is_free_on` answers for every address.
    let picker = fake(FakeProber::new().always_offering(30600).all_busy(true)).address(there);
    assert!(picker.pick_unused_port().is_err());
}

#[test]
fn free_on_the_address_is_free_there_only() {
    // A port held on 127.0.0.1 alone is busy there and for the wildcard,
    // free on 127.0.0.2.
    let held = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let picker = real().range(port..=port);
    assert!(picker.pick_unused_port().is_err());
    assert!(real()
        .range(port..=port)
        .address(LOCALHOST)
        .pick_unused_port()
        .is_err());
    let other = real()
        .range(port..=port)
        .address(Ipv4Addr::new(127, 0, 0, 2).into());
    assert_eq!(other.pick_unused_port(), Ok(port));
}

#[test]
fn listeners_honour_address_range_and_exclusions() {
    let block = real().pick_consecutive(3).unwrap();
    let (a, b, c) = (*block.start(), block.start() + 1, *block.end());
    // The block's claims are another picker's: `a` is skipped as claimed.
    let owner = Picker::new().ignore_environment().range(a..=a);
    assert_eq!(owner.pick_unused_port(), Ok(a));
    let picker = Picker::new()
        .ignore_environment()
        .address(LOCALHOST)
        .range(a..=c)
        .exclude([c]);
    let tcp = picker.bind_unused_tcp().unwrap();
    assert_eq!(tcp.local_addr().unwrap(), SocketAddr::new(LOCALHOST, b));
    let udp = picker.bind_unused_udp().unwrap();
    assert_eq!(udp.local_addr().unwrap(), SocketAddr::new(LOCALHOST, b));
    // b is now bound on TCP: no TCP port left.
    let e = picker.bind_unused_tcp().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrNotAvailable);
    assert!(
        e.to_string().contains(&format!("on 127.0.0.1 in {a}-{c}")),
        "{e}"
    );
    // Without a range: the kernel's choice, on the address.
    let any = real().address(LOCALHOST).bind_unused_tcp().unwrap();
    assert_eq!(any.local_addr().unwrap().ip(), LOCALHOST);
}

#[test]
fn pick_many_gives_distinct_ports_or_none() {
    let picker = fake(FakeProber::new().cycling(30000..30005));
    let ports = picker.pick_many(8).unwrap();
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 8);
    assert_eq!(picker.outstanding().len(), 8);
    assert_eq!(picker.pick_many(0), Ok(vec![]));
    // Five ports, two busy: four cannot be had, and none stay out.
    let prober = FakeProber::new()
        .busy_on(31003, Protocol::Tcp)
        .busy_on(31004, Protocol::Udp);
    let picker = fake(prober).range(31000..=31004);
    let e = picker.pick_many(4).unwrap_err();
    assert_eq!(e.reason(), NoFreePortReason::Busy);
    assert!(picker.outstanding().is_empty());
    // More than the range holds: at once.
    let e = picker.pick_many(6).unwrap_err();
    assert_eq!((e.reason(), e.tries()), (NoFreePortReason::TooMany, 0));
    assert_eq!(
        e.to_string(),
        "no 6 free ports in 31000-31004: it holds fewer outside the exclusions"
    );
}

#[test]
fn pick_many_asks_the_portserver_first() {
    let ports = pool_ports(3);
    let (address, _server) = embedded(&ports);
    let picker = real().portserver(Some(&address));
    let mut got = picker.pick_many(3).unwrap();
    got.sort_unstable();
    assert_eq!(got, ports);
}

#[test]
fn a_block_avoids_busy_and_excluded_ports() {
    let prober = FakeProber::new()
        .busy_on(31003, Protocol::Udp)
        .busy_on(31010, Protocol::Tcp);
    let picker = fake(prober).range(31000..=31019).exclude([31016]);
    let bad = [31003, 31010, 31016];
    let block = picker.pick_consecutive(5).unwrap();
    assert_eq!(block.end() - block.start(), 4);
    assert!(31000 <= *block.start() && *block.end() <= 31019);
    assert!(!bad.iter().any(|p| block.contains(p)), "{block:?}");
    for port in block.clone() {
        assert!(picker.outstanding().contains(&port));
    }
    // The next block does not overlap the first.
    let next = picker.pick_consecutive(3).unwrap();
    assert!(!next.clone().any(|p| block.contains(&p) || bad.contains(&p)));
}

#[test]
fn a_block_that_cannot_be_found_names_the_range() {
    let prober = [31002, 31005, 31008]
        .into_iter()
        .fold(FakeProber::new(), |f, p| f.busy_on(p, Protocol::Tcp));
    let picker = fake(prober).range(31000..=31009);
    let e = picker.pick_consecutive(3).unwrap_err();
    assert_eq!(e.range(), Some(31000..=31009));
    assert!(
        e.to_string()
            .starts_with("no block of 3 consecutive free ports found in 31000-31009"),
        "{e}"
    );
    // Nothing is left out after a failed block.
    assert!(picker.outstanding().is_empty());
    let two = picker.pick_consecutive(2).unwrap();
    assert!([31000, 31003, 31006].contains(two.start()), "{two:?}");
    let e = picker.pick_consecutive(0).unwrap_err();
    assert_eq!(e.reason(), NoFreePortReason::TooMany);
    let e = picker.pick_consecutive(11).unwrap_err();
    assert_eq!(e.reason(), NoFreePortReason::TooMany);
}

/// The kernel's ephemeral range, as the picker reads it.
fn ephemeral() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| portpick::__private::server::parse_kernel_range(&t))
        .unwrap_or((32768, 60999))
}

#[test]
fn a_block_without_range_comes_from_the_ephemeral_range_and_binds() {
    let picker = real();
    let block = picker.pick_consecutive(4).unwrap();
    let (lo, hi) = ephemeral();
    assert!(lo <= *block.start() && *block.end() <= hi, "{block:?}");
    for port in block.clone() {
        let tcp = portpick::__private::hold_tcp(port);
        let udp = portpick::__private::hold_udp(port);
        assert!(tcp.is_some() && udp.is_some(), "{port} of {block:?}");
    }
    for port in block {
        assert!(picker.return_port(port));
    }
}

#[test]
fn waiting_returns_once_something_listens() {
    let spare = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let addr = spare.local_addr().unwrap();
    drop(spare);
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        TcpListener::bind(addr).ok()
    });
    let result = portpick::wait_until_listening(addr, PATIENCE);
    // Another program may have taken the port meanwhile (then nothing
    // can be said); else the wait saw our listener.
    if later.join().unwrap().is_some() {
        result.unwrap();
    }
    // A listener already there: at once.
    let now = TcpListener::bind((LOCALHOST, 0)).unwrap();
    portpick::wait_until_listening(now.local_addr().unwrap(), PATIENCE).unwrap();
}

/// An address where nothing can listen while the pair lives: the local
/// end of a connection (bound, connected, not listening, and not bindable
/// by anyone else).
fn refusing() -> (SocketAddr, TcpListener, std::net::TcpStream) {
    let server = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
    (client.local_addr().unwrap(), server, client)
}

#[test]
fn waiting_for_nothing_times_out_naming_the_timeout() {
    let (addr, _server, _client) = refusing();
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = portpick::wait_until_listening(addr, timeout).unwrap_err();
    assert!(start.elapsed() >= timeout);
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let text = e.to_string();
    assert!(text.contains("after 300ms"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("refused"), "{text}");
    // A zero timeout still tries once.
    let e = portpick::wait_until_listening(addr, Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
}

#[test]
fn picker_options_are_send_and_sync() {
    fn check<T: Send + Sync>(_: &T) {}
    check(&Picker::new().range(1..=2).exclude([1]).address(LOCALHOST));
}
