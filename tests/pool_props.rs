//! The pool under random sequences of allocate / process dies / pid reused /
//! port busy or free / sweep, against a model, with fake prober and process
//! table: no port is ever held by two live owners, every port is accounted
//! for, stats add up, and a port busy outside the server is never handed out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use portpick::server::{Denial, Owner, Pool, ProcessTable};
use portpick::{Prober, Protocol};
use proptest::prelude::*;

#[derive(Default)]
struct Busy(Mutex<BTreeSet<u16>>);

impl Prober for Busy {
    fn is_free(&self, port: u16, _: Protocol) -> bool {
        !self.0.lock().unwrap().contains(&port)
    }
    fn kernel_port(&self, _: Protocol) -> Option<u16> {
        None
    }
}

#[derive(Default)]
struct Procs(Mutex<HashMap<u32, u64>>);

impl ProcessTable for Procs {
    fn start_time(&self, pid: u32) -> Option<u64> {
        self.0.lock().unwrap().get(&pid).copied()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u32),
    Dies(u32),
    Reused(u32),
    Busy(u16),
    Free(u16),
    Sweep(usize),
    SweepAll,
    /// A server thread takes a candidate to probe without the lock...
    Take(u32),
    /// ...and another step later reports it free or busy.
    Finish(usize, bool),
}

const PIDS: u32 = 6;
const PORTS: u16 = 12;
const BASE: u16 = 20000;
const QUOTA: usize = 5;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (2..2 + PIDS).prop_map(Op::Allocate),
        1 => (2..2 + PIDS).prop_map(Op::Dies),
        1 => (2..2 + PIDS).prop_map(Op::Reused),
        1 => (0..PORTS).prop_map(|p| Op::Busy(BASE + p)),
        1 => (0..PORTS).prop_map(|p| Op::Free(BASE + p)),
        1 => (0..4usize).prop_map(Op::Sweep),
        1 => Just(Op::SweepAll),
        2 => (2..2 + PIDS).prop_map(Op::Take),
        2 => (0..4usize, any::<bool>()).prop_map(|(k, f)| Op::Finish(k, f)),
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
        let busy = Busy::default();
        let procs = Procs::default();
        // Every pid starts alive with start time 1.
        for pid in 2..2 + PIDS {
            procs.0.lock().unwrap().insert(pid, 1);
        }
        let mut pool = Pool::new(BASE..BASE + PORTS, QUOTA);
        // Model: port -> owner for ports we believe held.
        let mut model: BTreeMap<u16, Owner> = BTreeMap::new();
        let mut allocations = 0u64;
        let mut clock = 1u64;
        let mut in_flight: Vec<(u16, Owner)> = Vec::new();
        for op in ops {
            match op {
                Op::Allocate(pid) => {
                    let Some(start_time) = procs.start_time(pid) else { continue };
                    let owner = Owner { pid, start_time };
                    let live_held = model.values().filter(|o| **o == owner).count()
                        + in_flight.iter().filter(|(_, o)| *o == owner).count();
                    match pool.allocate(owner, &busy, &procs) {
                        Ok(port) => {
                            prop_assert!((BASE..BASE + PORTS).contains(&port));
                            prop_assert!(!in_flight.iter().any(|&(p, _)| p == port),
                                "handed out {}, being probed for another request", port);
                            prop_assert!(!busy.0.lock().unwrap().contains(&port),
                                "handed out {port}, busy outside the server");
                            if let Some(prev) = model.get(&port) {
                                // Only a dead owner's port may be handed on.
                                prop_assert_ne!(procs.start_time(prev.pid), Some(prev.start_time),
                                    "port {} of live {:?} handed to {:?}", port, prev, owner);
                            }
                            prop_assert!(live_held < QUOTA);
                            model.insert(port, owner);
                            allocations += 1;
                        }
                        Err(Denial::Quota { held }) => {
                            prop_assert_eq!(held, QUOTA);
                            prop_assert_eq!(live_held, QUOTA);
                        }
                        Err(Denial::Exhausted) => {
                            // Exhausted means: no port both unheld by a live
                            // owner and free outside, within the probe budget
                            // and the owners checked. Every such port must at
                            // least be held in the pool's view or busy.
                            let b = busy.0.lock().unwrap();
                            for p in BASE..BASE + PORTS {
                                let free_in_pool = pool.owner_of(p).is_none()
                                    && !in_flight.iter().any(|&(q, _)| q == p);
                                prop_assert!(!free_in_pool || b.contains(&p),
                                    "port {} free and not busy, yet exhausted", p);
                            }
                        }
                        Err(other) => prop_assert!(false, "unexpected denial {:?}", other),
                    }
                }
                Op::Take(pid) => {
                    let Some(start_time) = procs.start_time(pid) else { continue };
                    let owner = Owner { pid, start_time };
                    if let Ok(port) = pool.take_candidate(owner, &procs, true) {
                        prop_assert!(!in_flight.iter().any(|&(p, _)| p == port));
                        if let Some(prev) = model.get(&port) {
                            prop_assert_ne!(procs.start_time(prev.pid), Some(prev.start_time),
                                "port {} of live {:?} taken as a candidate", port, prev);
                        }
                        in_flight.push((port, owner));
                    }
                }
                Op::Finish(k, free) => {
                    if in_flight.is_empty() {
                        // Not in flight: refused, nothing changes.
                        let stranger = Owner { pid: 2, start_time: 1 };
                        prop_assert!(!pool.finish_candidate(BASE, stranger, true));
                        continue;
                    }
                    let (port, owner) = in_flight.swap_remove(k % in_flight.len());
                    let got = pool.finish_candidate(port, owner, free);
                    prop_assert_eq!(got, free);
                    if got {
                        model.insert(port, owner);
                        allocations += 1;
                    }
                }
                Op::Dies(pid) => {
                    procs.0.lock().unwrap().remove(&pid);
                }
                Op::Reused(pid) => {
                    // The pid now names another process, started later.
                    // Start times only grow: a gone (pid, start) never returns.
                    clock += 1;
                    procs.0.lock().unwrap().insert(pid, clock);
                }
                Op::Busy(port) => {
                    busy.0.lock().unwrap().insert(port);
                }
                Op::Free(port) => {
                    busy.0.lock().unwrap().remove(&port);
                }
                Op::Sweep(n) => {
                    pool.reclaim_some(&procs, n);
                }
                Op::SweepAll => {
                    for owner in pool.owners() {
                        if procs.start_time(owner.pid) != Some(owner.start_time) {
                            pool.release_owner(owner);
                        }
                    }
                    // After a full sweep only live owners hold ports.
                    for (port, owner) in pool.held() {
                        prop_assert_eq!(procs.start_time(owner.pid), Some(owner.start_time),
                            "port {} still held by dead {:?}", port, owner);
                    }
                }
            }
            if let Err(e) = pool.check_invariants() {
                prop_assert!(false, "{}", e);
            }
            // The pool's view agrees with the model for every held port.
            for (port, owner) in pool.held() {
                prop_assert_eq!(model.get(&port), Some(&owner));
            }
            let s = pool.stats();
            prop_assert_eq!(s.managed, u64::from(PORTS));
            prop_assert_eq!(s.probing, in_flight.len() as u64);
            prop_assert_eq!(s.free + s.held + s.probing, s.managed);
            prop_assert_eq!(s.allocations, allocations);
            prop_assert!(s.denied_quota <= s.denied);
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
    let busy = Busy::default();
    let procs = Procs::default();
    for pid in 2..102 {
        procs.0.lock().unwrap().insert(pid, 7);
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
    assert!(
        after.owner_checks - before.owner_checks
            <= portpick::server::OWNER_CHECKS_PER_REQUEST as u64
    );

    // One big owner dies: the next request finds its ports with a bounded
    // number of checks (the cursor walks owners, not ports).
    procs.0.lock().unwrap().remove(&50);
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
