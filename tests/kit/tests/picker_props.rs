//! Two pickers sharing claims (as two processes would) under random pick /
//! return / reserve / guard sequences: a locally picked port is never held
//! by both, an outsider can claim a port exactly when neither holds it (so
//! returns release the claim), reserved ports come first, and each
//! picker's bookkeeping matches a model. Then a picker's range,
//! exclusions, `pick_many` and `pick_consecutive` against a naive oracle.
//! The pickers claim under a prefix of their own, so the made-up ports
//! meet no real picker's claims.
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

/// What a picker with a range is asked to do.
#[derive(Debug, Clone)]
enum RangeOp {
    One,
    Many(usize),
    Block(usize),
    Return(usize),
}

fn range_op() -> impl Strategy<Value = RangeOp> {
    prop_oneof![
        4 => Just(RangeOp::One),
        2 => (0..6usize).prop_map(RangeOp::Many),
        3 => (0..7usize).prop_map(RangeOp::Block),
        3 => (0..64usize).prop_map(RangeOp::Return),
    ]
}

/// The naive oracle: the ports a pick may hand out now.
fn open(
    lo: u16,
    hi: u16,
    excluded: &BTreeSet<u16>,
    busy: &BTreeSet<u16>,
    out: &BTreeSet<u16>,
) -> BTreeSet<u16> {
    (lo..=hi)
        .filter(|p| !excluded.contains(p) && !busy.contains(p) && !out.contains(p))
        .collect()
}

/// Whether `open` holds `n` consecutive ports (n at least 1).
fn has_block(open: &BTreeSet<u16>, n: usize) -> bool {
    open.iter()
        .any(|&p| (0..n).all(|i| open.contains(&(p + i as u16))))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Range, exclusions, pick_many and pick_consecutive against the naive
    /// oracle: in a small range (scanned whole) a pick fails exactly when
    /// the oracle has nothing, hands out only what it allows, and a failed
    /// call leaves nothing out.
    #[test]
    fn range_exclude_many_and_blocks_match_the_oracle(
        len in 1u16..24,
        excluded in proptest::collection::btree_set(31000u16..31030, 0..6),
        busy in proptest::collection::btree_set((31000u16..31030, any::<bool>()), 0..6),
        ops in proptest::collection::vec(range_op(), 1..30),
    ) {
        let (lo, hi) = (31000, 31000 + len - 1);
        let prober = busy.iter().fold(FakeProber::new(), |f, &(p, tcp)| {
            f.busy_on(p, if tcp { portpick::Protocol::Tcp } else { portpick::Protocol::Udp })
        });
        let busy: BTreeSet<u16> = busy.iter().map(|&(p, _)| p).collect();
        let picker = Picker::with_prober(prober)
            .ignore_environment()
            .claims_in(&format!("{}/", unique("range-props")))
            .range(lo..=hi)
            .exclude(excluded.iter().copied());
        let room = (lo..=hi).filter(|p| !excluded.contains(p)).count();
        let mut out = BTreeSet::new();
        for op in ops {
            let before = open(lo, hi, &excluded, &busy, &out);
            match op {
                RangeOp::One => match picker.pick_unused_port() {
                    Ok(port) => {
                        prop_assert!(before.contains(&port), "{} not open", port);
                        out.insert(port);
                    }
                    Err(e) => {
                        prop_assert!(before.is_empty(), "{} with {:?} open", e, before);
                        prop_assert_eq!(e.range(), Some(lo..=hi));
                    }
                },
                RangeOp::Many(n) => match picker.pick_many(n) {
                    Ok(ports) => {
                        prop_assert_eq!(ports.len(), n);
                        for port in ports {
                            prop_assert!(before.contains(&port), "{} not open", port);
                            prop_assert!(out.insert(port), "{} twice", port);
                        }
                    }
                    Err(e) => {
                        prop_assert!(before.len() < n, "{} with {:?} open", e, before);
                        let too_many = e.reason() == portpick::NoFreePortReason::TooMany;
                        prop_assert_eq!(too_many, n > room);
                    }
                },
                RangeOp::Block(n) => match picker.pick_consecutive(n) {
                    Ok(block) => {
                        prop_assert_eq!(block.clone().count(), n);
                        for port in block {
                            prop_assert!(before.contains(&port), "{} not open", port);
                            out.insert(port);
                        }
                    }
                    Err(e) => {
                        prop_assert!(n == 0 || !has_block(&before, n), "{} with {:?} open", e, before);
                        prop_assert_eq!(e.range(), Some(lo..=hi));
                    }
                },
                RangeOp::Return(k) => {
                    if let Some(&port) = out.iter().nth(k % out.len().max(1)) {
                        prop_assert!(picker.return_port(port));
                        out.remove(&port);
                    }
                }
            }
            prop_assert_eq!(picker.outstanding().into_iter().collect::<BTreeSet<_>>(), out.clone());
        }
    }

    /// Without a range, exclusions still hold: the kernel offers excluded
    /// ports, and none is handed out, nor one already out.
    #[test]
    fn exclusions_hold_without_a_range(
        excluded in proptest::collection::btree_set(31000u16..31008, 0..8),
        picks in 1usize..30,
    ) {
        let picker = Picker::with_prober(FakeProber::new().cycling(31000..31008))
            .ignore_environment()
            .claims_in(&format!("{}/", unique("exclude-props")))
            .exclude(excluded.iter().copied());
        let ports = picker.pick_many(picks).unwrap();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        prop_assert_eq!(distinct.len(), picks);
        prop_assert!(distinct.is_disjoint(&excluded));
        // The kernel's ports that are not excluded come first.
        let offered = (31000..31008).filter(|p| !excluded.contains(p)).count();
        prop_assert!(ports.iter().take(offered).all(|p| (31000..31008).contains(p)));
    }
}
