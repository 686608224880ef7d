//! The pool under random sequences of allocate / process dies / pid reused /
//! port busy or free / sweep / two-phase allocations / ports given back /
//! reservations restored / a failing process table, checked after every
//! step by the same model the `pool_ops` fuzz target uses: no port is ever
//! held by two live owners, every port is accounted for, stats add up, and
//! a port busy outside the server is never handed out.

use std::collections::BTreeMap;

use portpick::__private::fakes::{FakeProber, FakeProcesses};
use portpick::__private::pool_model::{PoolHarness, PoolOp, Releaser, PIDS};
use portpick::__private::server::{Denial, Owner, Pool, OWNER_CHECKS_PER_REQUEST};
use proptest::prelude::*;

const PORTS: u16 = 12;
const BASE: u16 = 20000;
const QUOTA: usize = 5;

fn op() -> impl Strategy<Value = PoolOp> {
    let pid = 0..PIDS;
    let port = 0..PORTS + 2;
    let releaser = prop_oneof![
        Just(Releaser::Holder),
        Just(Releaser::Other),
        Just(Releaser::Stranger)
    ];
    prop_oneof![
        6 => pid.clone().prop_map(PoolOp::Allocate),
        1 => pid.clone().prop_map(PoolOp::Dies),
        1 => pid.clone().prop_map(PoolOp::Reused),
        1 => port.clone().prop_map(PoolOp::Busy),
        1 => port.clone().prop_map(PoolOp::Free),
        1 => (0..4usize).prop_map(PoolOp::Sweep),
        1 => Just(PoolOp::SweepAll),
        1 => (port.clone(), releaser).prop_map(|(p, r)| PoolOp::Release(p, r)),
        1 => (pid.clone(), port).prop_map(|(pid, p)| PoolOp::Restore(pid, p)),
        2 => pid.prop_map(PoolOp::Begin),
        2 => (0..4usize).prop_map(PoolOp::Finish),
        1 => any::<bool>().prop_map(PoolOp::TableFails),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut harness = PoolHarness::new(PORTS, QUOTA);
        for op in ops {
            if let Err(e) = harness.apply(op) {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
        }
    }

    #[test]
    fn restore_never_double_books(entries in proptest::collection::vec((0..PORTS, 2..2 + PIDS, 1..3u64), 0..40)) {
        let mut pool = Pool::new(BASE..BASE + PORTS, 0);
        let mut first: BTreeMap<u16, Owner> = BTreeMap::new();
        for (p, pid, start_time) in entries {
            let port = BASE + p;
            let owner = Owner { pid, start_time };
            let took = pool.restore(port, owner);
            prop_assert_eq!(took, !first.contains_key(&port));
            first.entry(port).or_insert(owner);
            prop_assert_eq!(pool.owner_of(port), first.get(&port).copied());
            if let Err(e) = pool.check_invariants() {
                prop_assert!(false, "{}", e);
            }
        }
        // Ports outside the pool are refused.
        let outsider = Owner { pid: 2, start_time: 1 };
        prop_assert!(!pool.restore(BASE - 1, outsider));
    }
}

/// The "no port" answer of a full pool checks a bounded number of owners,
/// whatever the pool's size: the O(1) claim, counted rather than timed.
#[test]
fn no_port_cost_does_not_grow_with_the_pool() {
    let busy = FakeProber::new();
    let procs = FakeProcesses::new();
    for pid in 2..102 {
        procs.start(pid, 7);
    }
    let mut pool = Pool::new(10000..20000, 0);
    for i in 0..10000u32 {
        let pid = 2 + i % 100;
        pool.allocate(Owner { pid, start_time: 7 }, &busy, &procs)
            .unwrap();
    }
    let before = pool.stats();
    let owner = Owner {
        pid: 2,
        start_time: 7,
    };
    assert_eq!(pool.allocate(owner, &busy, &procs), Err(Denial::Exhausted));
    let after = pool.stats();
    assert_eq!(after.checked_last, 0, "no free port to probe");
    assert!(after.owner_checks - before.owner_checks <= OWNER_CHECKS_PER_REQUEST as u64);

    // One big owner dies: the next request finds its ports with a bounded
    // number of checks (the cursor walks owners, not ports).
    procs.end(50);
    let mut checks = 0;
    let port = loop {
        let before = pool.stats().owner_checks;
        let got = pool.allocate(owner, &busy, &procs);
        checks += pool.stats().owner_checks - before;
        if let Ok(port) = got {
            break port;
        }
        assert!(checks <= 200, "reclaim must make progress");
    };
    assert_eq!(pool.owner_of(port), Some(owner));
    assert_eq!(pool.stats().reclaimed, 100);
    pool.check_invariants().unwrap();
}
