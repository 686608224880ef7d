//! Two pickers sharing claims (as two processes would) under random pick /
//! return / reserve / guard sequences: a locally picked port is never held
//! by both, an outsider can claim a port exactly when neither holds it (so
//! returns release the claim), reserved ports come first, and each
//! picker's bookkeeping matches a model. The pickers claim under a prefix
//! of their own, so the made-up ports meet no real picker's claims.
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;

use portpick::__private::fakes::FakeProber;
use portpick::{Picker, Source};
use proptest::prelude::*;
use support::unique;

/// "The kernel" offers the same six ports round and round.
fn cycle() -> FakeProber {
    FakeProber::new().cycling(31000..31006)
}

#[derive(Debug, Clone)]
enum Op {
    Pick(bool),
    Return(bool, usize),
    Reserve(u16),
    Guard(bool),
    /// Whether an outsider (a third picker on the same directory) can
    /// claim a port: exactly when neither picker holds it locally.
    Check(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<bool>().prop_map(Op::Pick),
        3 => (any::<bool>(), 0..16usize).prop_map(|(w, i)| Op::Return(w, i)),
        1 => (20000u16..20004).prop_map(Op::Reserve),
        1 => any::<bool>().prop_map(Op::Guard),
        2 => (0..32usize).prop_map(Op::Check),
    ]
}

#[derive(Default)]
struct Model {
    /// Ports picked locally and not returned.
    local: BTreeSet<u16>,
    /// Reserved ports handed out and not returned.
    owned: BTreeSet<u16>,
    /// Reserved ports waiting.
    reserved: BTreeSet<u16>,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn claims_follow_the_bookkeeping(ops in proptest::collection::vec(op(), 1..60)) {
        let names = format!("{}/", unique("props"));
        let pickers = [
            Picker::with_prober(cycle()).ignore_environment().claims_in(&names).seed(1),
            Picker::with_prober(cycle()).ignore_environment().claims_in(&names).seed(2),
        ];
        let mut models = [Model::default(), Model::default()];
        for op in ops {
            match op {
                Op::Pick(w) | Op::Guard(w) => {
                    let i = usize::from(w);
                    let (port, source) = pickers[i].pick_with_source(None, None).unwrap();
                    let m = &mut models[i];
                    // Reserved ports first, while one is not out (a port
                    // reserved again while out waits until it is back).
                    let waiting = m.reserved.iter().copied()
                        .find(|p| !m.owned.contains(p) && !m.local.contains(p));
                    prop_assert_eq!(source == Source::Reserved, waiting.is_some());
                    match source {
                        Source::Reserved => {
                            // The lowest such port comes first.
                            prop_assert_eq!(waiting, Some(port));
                            m.reserved.remove(&port);
                            m.owned.insert(port);
                        }
                        Source::Local => {
                            // Never a port this picker has out or waiting,
                            // whatever its source.
                            prop_assert!(!m.owned.contains(&port) && !m.reserved.contains(&port),
                                "local pick {} is reserved or out", port);
                            prop_assert!(m.local.insert(port), "picked {} twice", port);
                            let other = &models[1 - i];
                            prop_assert!(!other.local.contains(&port),
                                "port {} held by both pickers", port);
                        }
                        Source::PortServer => prop_assert!(false, "no portserver here"),
                    }
                    if matches!(op, Op::Guard(_)) {
                        // A guard dropped at once: as return_port.
                        prop_assert!(pickers[i].return_port(port));
                        let m = &mut models[i];
                        if !m.local.remove(&port) {
                            m.owned.remove(&port);
                            m.reserved.insert(port);
                        }
                    }
                }
                Op::Return(w, k) => {
                    let i = usize::from(w);
                    let m = &mut models[i];
                    let all: Vec<u16> = m.local.iter().chain(&m.owned).copied().collect();
                    if all.is_empty() {
                        prop_assert!(!pickers[i].return_port(12345));
                        continue;
                    }
                    let port = all[k % all.len()];
                    prop_assert!(pickers[i].return_port(port));
                    if !m.local.remove(&port) {
                        m.owned.remove(&port);
                        m.reserved.insert(port);
                    }
                }
                Op::Reserve(port) => {
                    pickers[0].add_reserved_port(port);
                    models[0].reserved.insert(port);
                }
                Op::Check(k) => {
                    // The kernel's ports and every port either picker holds.
                    let mut candidates: Vec<u16> = (31000..31006).collect();
                    candidates.extend(models.iter().flat_map(|m| m.local.iter().copied()));
                    let port = candidates[k % candidates.len()];
                    let outsider = Picker::with_prober(FakeProber::new().always_offering(port))
                        .ignore_environment()
                        .claims_in(&names)
                        .seed(3);
                    let (got, source) = outsider.pick_with_source(None, None).unwrap();
                    prop_assert_eq!(source, Source::Local);
                    let held = models.iter().any(|m| m.local.contains(&port));
                    prop_assert_eq!(got == port, !held,
                        "port {} held: {}, outsider got {}", port, held, got);
                    // The outsider's claim ends with it.
                    drop(outsider);
                }
            }
            for (p, m) in pickers.iter().zip(&models) {
                let want: BTreeSet<u16> = m.local.union(&m.owned).copied().collect();
                prop_assert_eq!(p.outstanding().into_iter().collect::<BTreeSet<_>>(), want);
                prop_assert_eq!(p.reserved().into_iter().collect::<BTreeSet<_>>(), m.reserved.clone());
            }
        }
        // After everything is returned, a third picker can claim every port.
        for (p, m) in pickers.iter().zip(&models) {
            for &port in &m.local {
                prop_assert!(p.return_port(port));
            }
        }
        let third = Picker::with_prober(cycle()).ignore_environment().claims_in(&names);
        let got: BTreeSet<u16> = (0..6).map(|_| third.pick_unused_port().unwrap()).collect();
        prop_assert_eq!(got, (31000..31006).collect::<BTreeSet<_>>());
    }
}
