//! Several ports at once: `pick_many` (distinct ports, from the usual
//! sources) and `pick_consecutive` (a block, always picked locally, in the
//! picker's range or the kernel's ephemeral range).

use std::ops::RangeInclusive;
use std::sync::OnceLock;

use super::error::Wanted;
use super::local::{Claimed, SCAN_LIMIT};
use super::{NoFreePortError, NoFreePortReason, Picker};
use crate::probe::Prober;
use crate::sync::lock;

/// How many random blocks `pick_consecutive` tries before a scan.
const BLOCK_TRIES: usize = 20;

/// The ephemeral range when the kernel's cannot be read: Linux's default,
/// elsewhere IANA's dynamic ports.
const DEFAULT_EPHEMERAL: (u16, u16) = if cfg!(target_os = "linux") {
    (32768, 60999)
} else {
    (49152, 65535)
};

/// The kernel's ephemeral range (`ip_local_port_range`), where `bind(0)`
/// finds ports: read once per process.
fn ephemeral_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| crate::server::ranges::parse_kernel_range(&text))
            .filter(|&(lo, hi)| 0 < lo && lo <= hi)
            .unwrap_or(DEFAULT_EPHEMERAL)
    })
}

impl<P: Prober> Picker<P> {
    /// `n` distinct ports, each picked as [`Picker::pick_unused_port`]
    /// picks one: from the same sources (the portserver first when one is
    /// configured and no option forbids it), each claimed like one pick.
    /// When one cannot be found, those already picked are returned.
    ///
    /// ```no_run
    /// let picker = portpick::Picker::new();
    /// let ports = picker.pick_many(3)?;
    /// assert_eq!(ports.len(), 3);
    /// # Ok::<(), portpick::NoFreePortError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] as for one pick, and at once (reason
    /// [`NoFreePortReason::TooMany`]) when the range holds fewer than `n`
    /// ports outside the exclusions, or `n` is above 65,535.
    pub fn pick_many(&self, n: usize) -> Result<Vec<u16>, NoFreePortError> {
        let room = self.room().unwrap_or(usize::from(u16::MAX));
        if n > room {
            let e = NoFreePortError::new(0, NoFreePortReason::TooMany);
            return Err(e.within(self.range, Wanted::Many(n)));
        }
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            match self.pick_unused_port() {
                Ok(port) => ports.push(port),
                Err(e) => {
                    for port in ports {
                        self.return_port(port);
                    }
                    return Err(e);
                }
            }
        }
        Ok(ports)
    }

    /// A block of `n` consecutive ports, each free on TCP and UDP (on the
    /// picker's [`address`](Picker::address)), not excluded, and claimed as
    /// a local pick; return each with [`Picker::return_port`]. Always picked
    /// locally: a portserver gives single ports. The block lies in the
    /// picker's [`range`](Picker::range), or without one in the kernel's
    /// ephemeral range (read once), where single local picks come from.
    /// Random blocks are tried, then, when the range has at most 4,096
    /// places for a block, every place in turn.
    ///
    /// ```no_run
    /// let picker = portpick::Picker::new();
    /// let block = picker.pick_consecutive(4)?;
    /// assert_eq!(block.end() - block.start(), 3);
    /// # Ok::<(), portpick::NoFreePortError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NoFreePortError`] naming the range when no block was found, and
    /// at once (reason [`NoFreePortReason::TooMany`]) when `n` is 0 or
    /// larger than the range.
    pub fn pick_consecutive(&self, n: usize) -> Result<RangeInclusive<u16>, NoFreePortError> {
        let (lo, hi) = self.range.unwrap_or_else(ephemeral_range);
        let within = |e: NoFreePortError| e.within(Some((lo, hi)), Wanted::Block(n));
        let span = (usize::from(hi) + 1).saturating_sub(usize::from(lo));
        if n == 0 || n > span {
            return Err(within(NoFreePortError::new(0, NoFreePortReason::TooMany)));
        }
        // n <= span <= 65535.
        let size = n as u16;
        let last = hi - (size - 1);
        let block = |start: u16| start..=start + (size - 1);
        for _ in 0..BLOCK_TRIES {
            let start = lock(&self.rng).inclusive(lo, last);
            if self.take_block(start, size).is_ok() {
                return Ok(block(start));
            }
        }
        let mut tries = BLOCK_TRIES;
        if u32::from(last - lo) < SCAN_LIMIT {
            // From a random place, round the range.
            let first = lock(&self.rng).inclusive(lo, last);
            let (first, end, lo) = (u32::from(first), u32::from(last) + 1, u32::from(lo));
            let mut pieces = [(first, end), (lo, first)].into_iter();
            let found = pieces.find_map(|(from, to)| self.scan(from..to, size, &mut tries));
            if let Some(start) = found {
                return Ok(block(start));
            }
        }
        Err(within(self.failure(tries, &Claimed::default())))
    }

    /// The first block of `size` starting in `starts` that can be taken.
    /// A port that fails skips every block that holds it.
    fn scan(&self, starts: std::ops::Range<u32>, size: u16, tries: &mut usize) -> Option<u16> {
        let mut start = starts.start;
        while start < starts.end {
            *tries += 1;
            match self.take_block(start as u16, size) {
                Ok(()) => return Some(start as u16),
                Err(bad) => start = u32::from(bad) + 1,
            }
        }
        None
    }

    /// Takes `start..start + size` whole, or none of it: the first port
    /// that failed.
    fn take_block(&self, start: u16, size: u16) -> Result<(), u16> {
        let end = start + (size - 1);
        // The cheap checks first, for the whole block.
        {
            let state = self.state();
            if let Some(bad) = (start..=end).find(|&p| !self.allows(p) || state.has(p)) {
                return Err(bad);
            }
        }
        for port in start..=end {
            if !self.take(port, || self.free(port), &mut Claimed::default()) {
                for taken in start..port {
                    self.return_port(taken);
                }
                return Err(port);
            }
        }
        Ok(())
    }
}
