//! A picker never hands out a port it has out, whichever source gave it:
//! a portserver of the test's own whose pool lies in the kernel's
//! ephemeral range and runs dry, so that local picks meet its ports (the
//! field report: "port 39341 repeated at pick 807").
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;
use std::io::Write;

use portpick::__private::fakes::FakeProber;
use portpick::{Picker, PortServerError, Source};
use support::*;

/// `n` ports of the kernel's ephemeral range, free now, from a random
/// place in it (bound one at a time, so no descriptor limit is met).
fn ephemeral_ports(n: usize) -> Vec<u16> {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| portpick::__private::server::parse_kernel_range(&t))
        .unwrap_or((32768, 60999));
    let span = u32::from(hi - lo) + 1;
    let start = std::process::id() % span;
    let ports: Vec<u16> = (0..span)
        .map(|i| lo + ((start + i) % span) as u16)
        .filter(|&p| portpick::is_port_free(p))
        .take(n)
        .collect();
    assert_eq!(ports.len(), n, "not enough free ports in {lo}-{hi}");
    ports
}

#[test]
fn local_picks_never_repeat_a_port_the_portserver_gave() {
    // "The kernel" offers exactly the server's ports: every local pick
    // after the pool runs dry meets one.
    let ports = kernel_ports(20);
    let (address, _server) = embedded(&ports);
    let picker = Picker::with_prober(FakeProber::new().cycling(ports.clone()))
        .ignore_environment()
        .claims_in(&format!("{}/", unique("repeats")))
        .portserver(Some(&address));
    let mut seen = BTreeSet::new();
    let mut sources = BTreeSet::new();
    for i in 0..40 {
        let (port, source) = picker.pick_with_source(None, None).unwrap();
        assert!(seen.insert(port), "port {port} repeated at pick {i}");
        sources.insert(format!("{source:?}"));
    }
    assert_eq!(sources.len(), 2, "both sources used: {sources:?}");
}

#[test]
fn no_repeats_over_a_thousand_picks_with_a_dry_pool_in_the_ephemeral_range() {
    // The field report, with real sockets: 800 pool ports of the ~28,000
    // ephemeral ones, then 400 local picks that bind(0) there.
    let ports = ephemeral_ports(800);
    let (address, _server) = embedded(&ports);
    let picker = Picker::new()
        .ignore_environment()
        .claims_in(&format!("{}/", unique("repeats")))
        .portserver(Some(&address));
    let mut seen = BTreeSet::new();
    let mut from_server = 0;
    for i in 0..1200 {
        let (port, source) = picker.pick_with_source(None, None).unwrap();
        assert!(seen.insert(port), "port {port} repeated at pick {i}");
        from_server += usize::from(source == Source::PortServer);
    }
    // Some pool ports may have been busy when asked for.
    assert!(from_server > 700, "{from_server} from the server");
}

#[test]
fn a_portserver_port_this_picker_has_out_is_not_handed_out_again() {
    // Claims off: the server cannot see that the port is out here.
    let port = kernel_ports(1)[0];
    let picker = Picker::with_prober(FakeProber::new().always_offering(port))
        .ignore_environment()
        .claims(false);
    assert_eq!(
        picker.pick_with_source(None, None),
        Ok((port, Source::Local))
    );
    let (address, _server) = embedded(&[port]);
    let (again, source) = picker.pick_with_source(None, Some(&address)).unwrap();
    assert_ne!(again, port);
    assert_eq!(source, Source::Local);
}

#[test]
fn a_server_that_gives_only_ports_out_here_is_an_error() {
    let address = unique_address("repeats");
    let listener = listen(&address);
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"31337\n").unwrap();
        }
    });
    let picker = Picker::with_prober(FakeProber::new())
        .ignore_environment()
        .claims(false);
    picker.add_reserved_port(31337);
    assert_eq!(picker.pick_unused_port(), Ok(31337));
    match picker.get_port_from_port_server(&address, None) {
        Err(PortServerError::Repeated { port: 31337, .. }) => {}
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
    assert_eq!(picker.outstanding(), vec![31337]);
}

#[test]
fn the_repeats_of_one_pick_share_one_timeout() {
    // The server answers each request after 3/4 of the picker's timeout,
    // always with a port the picker has out: the repeat it is asked for
    // comes after the pick's deadline, and the pick must not wait for it.
    let timeout = std::time::Duration::from_secs(2);
    let address = unique_address("repeats-slow");
    let listener = listen(&address);
    let returned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let returned = returned.clone();
        std::thread::spawn(move || {
            let mut returned_before = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                std::thread::sleep(timeout * 3 / 4);
                returned_before.push(returned.load(std::sync::atomic::Ordering::SeqCst));
                let _ = s.write_all(b"31337\n");
            }
            returned_before
        })
    };
    let picker = Picker::with_prober(FakeProber::new())
        .ignore_environment()
        .claims(false)
        .portserver_timeout(timeout);
    picker.add_reserved_port(31337);
    assert_eq!(picker.pick_unused_port(), Ok(31337));
    let result = picker.get_port_from_port_server(&address, None);
    returned.store(true, std::sync::atomic::Ordering::SeqCst);
    match result {
        Err(PortServerError::Timeout { after, .. }) => assert_eq!(after, timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.join().unwrap(),
        [false, true],
        "the pick waited for the server's second answer, past its timeout"
    );
}
