//! A small std-only random source for the random-port fallback: SplitMix64,
//! seeded from std's per-process random hasher keys, the clock and the
//! thread. Not for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        std::hash::Hash::hash(&std::thread::current().id(), &mut h);
        Rng(h.finish())
    }

    pub(crate) fn with_seed(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (which must not be empty).
    pub(crate) fn range(&mut self, range: std::ops::Range<u16>) -> u16 {
        let span = u64::from(range.end.saturating_sub(range.start)).max(1);
        // Multiply-shift: unbiased enough for picking ports.
        let offset = ((self.next_u64() >> 32) * span) >> 32;
        range.start + offset as u16
    }

    /// Uniform in `lo..=hi` (`hi` below `lo` counts as `lo`).
    pub(crate) fn inclusive(&mut self, lo: u16, hi: u16) -> u16 {
        let span = u64::from(hi.saturating_sub(lo)) + 1;
        let offset = ((self.next_u64() >> 32) * span) >> 32;
        lo + offset as u16
    }
}
