//! The descriptor budget: how many connections may wait for a slow request,
//! given the open-files limit, so that a flood of silent clients never
//! takes the descriptors that the work that matters needs (reading
//! `/proc`, the journal and its compaction, the replies).

pub(crate) use crate::limits::open_files_limit;

/// Descriptors kept for everything but connections waiting in the slow
/// lane: stdio, the listener and its clones, the journal and the temp file
/// of a compaction, a `/proc` read and a reply in hand per acceptor, the
/// reclaimer's `/proc` reads, and slack for connections between an
/// acceptor and the slow lane.
pub(crate) fn reserve(acceptors: usize) -> usize {
    24 + 4 * acceptors
}

/// Connections the slow lane may hold: the configured cap, lowered so that
/// they and the reserve fit in `limit` (`None`: unknown); at least 1.
pub(crate) fn pending_cap(configured: usize, acceptors: usize, limit: Option<u64>) -> usize {
    let budget = limit.map_or(usize::MAX, |l| {
        usize::try_from(l)
            .unwrap_or(usize::MAX)
            .saturating_sub(reserve(acceptors))
    });
    configured.min(budget).max(1)
}

#[cfg(test)]
mod tests {
    use super::pending_cap;

    #[test]
    fn the_slow_lane_fits_in_the_open_files_limit() {
        assert_eq!(pending_cap(512, 2, Some(1024)), 512);
        assert_eq!(pending_cap(512, 2, Some(128)), 96);
        assert_eq!(pending_cap(512, 2, Some(20)), 1);
        assert_eq!(pending_cap(512, 2, None), 512);
        assert_eq!(pending_cap(512, 2, Some(u64::MAX)), 512);
    }
}
