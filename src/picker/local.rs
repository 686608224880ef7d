//! The local pick: candidates (the kernel's, then random ones; or random
//! ones in the picker's range, then a scan of a small range), each claimed
//! across processes, then probed, then recorded. Bounded everywhere: a full
//! range fails, it does not loop.

use super::error::Wanted;
use super::{NoFreePortError, NoFreePortReason, Picker};
use crate::claim::{self, Claim};
use crate::probe::{Prober, Protocol};
use crate::sync::lock;

/// How many kernel-assigned ports, then random ports, a local pick tries.
pub(super) const TRIES: usize = 10;
/// Random ports come from here, as in Python.
const RANDOM_RANGE: std::ops::Range<u16> = 15000..25000;
/// How many random candidates a pick in a range tries first.
pub(super) const RANGE_TRIES: usize = 2 * TRIES;
/// A range of at most this many ports (or block starts) is scanned whole
/// after the random tries; a larger one fails after them. A scan costs a
/// claim and a probe per port, at most about 100 ms.
pub(super) const SCAN_LIMIT: u32 = 4096;

/// Counts the candidates another socket had claimed, so that a pick that
/// fails says whether other processes hold the ports.
#[derive(Debug, Default)]
pub(super) struct Claimed(usize);

impl<P: Prober> Picker<P> {
    /// Picks a port by probing, never asking a portserver: up to 10
    /// kernel-assigned TCP ports that are also free on UDP, then up to 10
    /// random ports in 15000..25000 free on both. With a
    /// [`range`](Picker::range): up to 20 random ports in it, then, for a
    /// range of at most 4,096 ports, each of its ports in turn. A port
    /// picked and not returned is never picked again by this `Picker`, and
    /// (with claims) not by any other process until we return it or exit.
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] when every candidate was busy, the range holds
    /// no port outside the exclusions, or no socket could be opened to
    /// probe with.
    pub fn pick_local(&self) -> Result<u16, NoFreePortError> {
        let Some((lo, hi)) = self.range else {
            return self.pick_anywhere();
        };
        let within = |e: NoFreePortError| e.within(self.range, Wanted::One);
        if self.room() == Some(0) {
            return Err(within(NoFreePortError::new(0, NoFreePortReason::TooMany)));
        }
        let mut tries = 0;
        let mut claimed = Claimed::default();
        for port in self.candidates(lo, hi) {
            tries += 1;
            if self.take(port, || self.free(port), &mut claimed) {
                return Ok(port);
            }
        }
        Err(within(self.failure(tries, &claimed)))
    }

    /// Python's candidates: the kernel's, then random ones.
    fn pick_anywhere(&self) -> Result<u16, NoFreePortError> {
        let mut claimed = Claimed::default();
        for _ in 0..TRIES {
            let Some(port) = self.prober.kernel_port(Protocol::Tcp) else {
                continue;
            };
            // The kernel vouched for TCP on every address.
            let free = || match self.address {
                None => self.prober.is_free(port, Protocol::Udp),
                Some(_) => self.free(port),
            };
            if self.take(port, free, &mut claimed) {
                return Ok(port);
            }
        }
        for _ in 0..TRIES {
            let port = lock(&self.rng).range(RANDOM_RANGE);
            if self.take(port, || self.free(port), &mut claimed) {
                return Ok(port);
            }
        }
        Err(self.failure(2 * TRIES, &claimed))
    }

    /// The candidates of a pick in `lo..=hi`: random ports, then, when the
    /// range is small, every port from a random start (so that pickers
    /// scanning at once do not all meet at `lo`).
    pub(super) fn candidates(&self, lo: u16, hi: u16) -> impl Iterator<Item = u16> + '_ {
        // 0 when the range is empty (`hi` below `lo`): no candidate.
        let span = (u32::from(hi) + 1).saturating_sub(u32::from(lo));
        let start = lock(&self.rng).inclusive(lo, hi);
        let scan = if span <= SCAN_LIMIT { span } else { 0 };
        let tries = if span == 0 { 0 } else { RANGE_TRIES };
        let random = (0..tries).map(move |_| lock(&self.rng).inclusive(lo, hi));
        let every = (0..scan).map(move |i| {
            let offset = (u32::from(start - lo) + i) % span;
            (u32::from(lo) + offset) as u16
        });
        random.chain(every)
    }

    /// How many ports the range holds outside the exclusions (`None`: no
    /// range).
    pub(super) fn room(&self) -> Option<usize> {
        let (lo, hi) = self.range?;
        if lo > hi {
            return Some(0);
        }
        let span = usize::from(hi - lo) + 1;
        let excluded = self.exclude.iter().filter(|&&p| lo <= p && p <= hi);
        Some(span - excluded.count())
    }

    /// Whether `port` is free on TCP and UDP where this picker looks.
    pub(super) fn free(&self, port: u16) -> bool {
        match self.address {
            None => self.prober.is_port_free(port),
            Some(ip) => {
                port != 0
                    && self.prober.is_free_on(ip, port, Protocol::Tcp)
                    && self.prober.is_free_on(ip, port, Protocol::Udp)
            }
        }
    }

    /// The error after `tries` candidates failed. Every bind fails alike
    /// when descriptors run out: say so, rather than that they were busy;
    /// and say when other processes had claimed candidates.
    pub(super) fn failure(&self, tries: usize, claimed: &Claimed) -> NoFreePortError {
        let reason = if claim::out_of_descriptors() {
            NoFreePortReason::OutOfFileDescriptors
        } else if claimed.0 > 0 {
            NoFreePortReason::Claimed { claimed: claimed.0 }
        } else {
            NoFreePortReason::Busy
        };
        NoFreePortError::new(tries, reason)
    }

    /// Records `port` as picked if it may be handed out (range, exclusions)
    /// and nobody has it: not this picker (from any source), not another
    /// process's claim (claims on), and `free` says it is free. The claim
    /// comes before the probe, so a port another process claimed is never
    /// bound by our probe (which its owner, binding it, could meet).
    pub(super) fn take(
        &self,
        port: u16,
        free: impl FnOnce() -> bool,
        claimed: &mut Claimed,
    ) -> bool {
        if !self.allows(port) || self.state().has(port) {
            return false;
        }
        let claim = match &self.claims {
            None => None,
            Some(names) => match names.claim(port) {
                Claim::Held(claim) => Some(claim),
                Claim::Taken => {
                    claimed.0 += 1;
                    return false;
                }
                Claim::Unavailable(e) => {
                    claim::warn_unavailable(port, &e);
                    None
                }
            },
        };
        if !free() {
            return false;
        }
        let mut state = self.state();
        // Another thread of ours may have taken it meanwhile (only when
        // unclaimed: a claim excludes our own threads too), or a portserver
        // given it to us.
        if state.has(port) {
            return false;
        }
        state.picked_locally.insert(port, claim);
        true
    }
}
