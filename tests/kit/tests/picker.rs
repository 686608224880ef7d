//! The pick algorithm and its bookkeeping, driven deterministically by the
//! test kit's scripted prober (the root's tests/picker.rs checks on real
//! sockets what it hands out).
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;

use portpick::__private::fakes::FakeProber;
use portpick::{Picker, Prober, Protocol, Source};
use support::*;

fn unclaimed<P: Prober>(p: P) -> Picker<P> {
    Picker::with_prober(p).ignore_environment().claims(false)
}

/// Kernel ports come from a script, each question recorded.
fn script(kernel: &[u16]) -> FakeProber {
    FakeProber::new()
        .offering(kernel.iter().copied())
        .recording()
}

#[test]
fn a_kernel_port_busy_on_udp_is_skipped() {
    let picker = unclaimed(script(&[30001, 30002]).busy_on(30001, Protocol::Udp));
    assert_eq!(picker.pick_unused_port(), Ok(30002));
    let asked = picker.prober().asked();
    // The kernel vouched for TCP; only UDP is asked.
    assert_eq!(asked, vec![(30001, Protocol::Udp), (30002, Protocol::Udp)]);
}

#[test]
fn when_every_try_fails_a_typed_error() {
    let picker = unclaimed(FakeProber::new().all_busy(true));
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
    let picker = unclaimed(script(&[])).seed(7);
    let port = picker.pick_unused_port().unwrap();
    assert!((15000..25000).contains(&port));
    let asked = picker.prober().asked();
    assert!(asked.contains(&(port, Protocol::Tcp)));
    assert!(asked.contains(&(port, Protocol::Udp)));
    // The same seed, the same pick.
    let again = unclaimed(script(&[])).seed(7);
    assert_eq!(again.pick_unused_port(), Ok(port));
}

#[test]
fn a_picked_port_is_not_picked_again_until_returned() {
    // The kernel offers the same port twice (as bind(0) may).
    let picker = unclaimed(script(&[30001, 30001, 30002, 30001]));
    assert_eq!(picker.pick_unused_port(), Ok(30001));
    assert_eq!(picker.pick_unused_port(), Ok(30002));
    assert!(picker.return_port(30001));
    assert_eq!(picker.pick_unused_port(), Ok(30001));
}

#[test]
fn reserved_owned_and_returned_bookkeeping() {
    let picker = unclaimed(script(&[30001]));
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
    assert!(picker.prober().asked().is_empty());
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
    let picker = unclaimed(script(&[30001, 30002]));
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
fn random_fallback_after_ten_busy_kernel_ports() {
    // Ten kernel ports, each busy on UDP: exactly ten kernel tries (all
    // for TCP), then random ports in 15000..25000.
    let kernel: Vec<u16> = (30001..30012).collect();
    let mut prober = script(&kernel);
    for &p in &kernel {
        prober = prober.busy_on(p, Protocol::Udp);
    }
    let picker = unclaimed(prober).seed(11);
    let port = picker.pick_unused_port().unwrap();
    assert!((15000..25000).contains(&port), "{port}");
    assert_eq!(picker.prober().kernel_asked(), vec![Protocol::Tcp; 10]);
    // The eleventh kernel port was never offered.
    assert_eq!(picker.prober().kernel_left(), 1);
    let asked = picker.prober().asked();
    assert!(asked[..10].iter().all(|&(_, proto)| proto == Protocol::Udp));
    assert!(asked.ends_with(&[(port, Protocol::Tcp), (port, Protocol::Udp)]));
}

#[test]
fn one_picker_shared_by_threads_never_hands_a_port_out_twice() {
    // "The kernel" keeps offering the same 40 ports, as bind(0) may.
    let picker = unclaimed(FakeProber::new().cycling(30000..30040));
    let ports: Vec<u16> = in_threads(8, |_| {
        (0..25)
            .map(|_| picker.pick_unused_port().unwrap())
            .collect()
    });
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "repeats among {ports:?}");
    assert_eq!(picker.outstanding().len(), 200);
    // The 40 offered ports were all used before random ones.
    assert!((30000..30040).all(|p| distinct.contains(&p)));
}

#[test]
fn a_reserved_port_comes_before_the_portserver() {
    let ports = pool_ports(1);
    let (address, _server) = embedded(&ports);
    let picker = unclaimed(script(&[30001]));
    picker.add_reserved_port(20005);
    assert_eq!(
        picker.pick_with_source(None, Some(&address)),
        Ok((20005, Source::Reserved))
    );
    // Reserved ports are not probed: they were vouched for.
    assert!(picker.prober().asked().is_empty());
    assert_eq!(
        picker.pick_with_source(None, Some(&address)),
        Ok((ports[0], Source::PortServer))
    );
    // A portserver's port is not probed or offered by the kernel either.
    assert!(picker.prober().kernel_asked().is_empty());
    let mut want = vec![20005, ports[0]];
    want.sort_unstable();
    assert_eq!(picker.outstanding(), want);
}
