//! The portserver in the test process with the test kit's fake process
//! table: pid reuse, and pools larger than real processes make practical.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portpick::__private::fakes::FakeProcesses;
use support::*;

#[test]
fn a_reused_pid_is_a_new_owner() {
    let procs = Arc::new(FakeProcesses::default());
    // No background sweep: the request path alone must notice.
    let (address, _server) = fake_server([41000, 41001], &procs, |c| {
        c.reclaim_interval(Duration::from_secs(3600))
    });
    procs.start(4242, 100);
    let a = ask(&address, 4242).unwrap();
    let b = ask(&address, 4242).unwrap();
    assert_eq!(ask(&address, 4242), None);
    // Pid 4242 exits and a new process gets the same pid.
    procs.start(4242, 200);
    let got: BTreeSet<u16> = (0..2).map(|_| ask(&address, 4242).unwrap()).collect();
    assert_eq!(got, BTreeSet::from([a, b]));
    let s = stats(&address);
    assert_eq!(s["ports-reclaimed"], 2);
    assert_eq!(s["num-owners"], 1);
}

#[test]
fn an_exhausted_pool_says_nothing_at_once() {
    let procs = Arc::new(FakeProcesses::default());
    let (address, _server) = fake_server(30000..40000, &procs, |c| c.max_ports_per_pid(0));
    for pid in 2..12 {
        procs.start(pid, 1);
    }
    for i in 0..10000u32 {
        assert!(ask(&address, 2 + i % 10).is_some());
    }
    let start = Instant::now();
    assert_eq!(ask(&address, 5), None);
    assert!(start.elapsed() < Duration::from_secs(5));
    let s = stats(&address);
    assert_eq!(s["num-ports-held"], 10000);
    assert_eq!(s["denied-exhausted"], 1);
    assert!(s["num-ports-checked-for-last-request"] == 0);
}

#[test]
fn parallel_clients_never_share_a_port() {
    let procs = Arc::new(FakeProcesses::default());
    let (address, _server) = fake_server(42000..42400, &procs, |c| c);
    for pid in 100..108 {
        procs.start(pid, 1);
    }
    let got: Vec<u16> = in_threads(8, |t| {
        (0..50)
            .map(|_| ask(&address, 100 + t as u32).unwrap())
            .collect()
    });
    let distinct: BTreeSet<u16> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 400);
    assert_eq!(stat(&address, "total-allocations"), 400);
}
