//! Reclaiming ports of gone owners: a thread sweeps every owner once a
//! second (and at once when the pool runs dry), reading the process table
//! outside the pool lock, and logs a summary of the statistics at
//! `--verbose`. Owners of reservations kept outside the pool are swept
//! too; theirs are dropped.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::server::lifecycle::Shared;
use crate::server::log::{count, log, stats_summary, Level};
use crate::server::process::{presence, Owner, Presence};
use crate::sync::lock;

pub(super) fn reclaim_loop(shared: &Shared) {
    let interval = shared
        .config
        .reclaim_interval
        .max(Duration::from_millis(10));
    // A flood of "no port" answers wakes us each time; sweeping more often
    // than this would only burn a core on /proc reads.
    let min_gap = interval.min(Duration::from_millis(20));
    let mut last_stats = Instant::now();
    let mut stats_before = Vec::new();
    let mut last_sweep = Instant::now();
    loop {
        let since = last_sweep.elapsed();
        if since < min_gap {
            thread::sleep(min_gap - since);
        }
        if !shared.stopping() {
            shared.pool_dry.wait(interval);
        }
        if shared.stopping() {
            return;
        }
        last_sweep = Instant::now();
        sweep(shared);
        if let Some(every) = shared.config.stats_interval {
            if shared.logger.enabled(Level::Verbose) && last_stats.elapsed() >= every {
                let secs = last_stats.elapsed().as_secs();
                last_stats = Instant::now();
                let now = shared.stats();
                let line = stats_summary(&stats_before, &now, secs);
                log!(shared.logger, Level::Verbose, "{line}");
                stats_before = now;
            }
        }
    }
}

/// Checks every owner outside the lock, then takes back the ports of the
/// gone ones: the pool's go back to the queue; those outside the pool are
/// dropped (the next rewrite of the journal leaves them out).
fn sweep(shared: &Shared) {
    let (mut owners, outside) = {
        let core = lock(&shared.core);
        let outside: Vec<Owner> = core.outside.iter().map(|&(_, o)| o).collect();
        (core.pool.owners(), outside)
    };
    owners.extend(outside);
    // Sorted, so `dead` is too and can be searched.
    owners.sort_unstable();
    owners.dedup();
    let mut dead: Vec<Owner> = Vec::new();
    for owner in owners {
        match presence(&*shared.processes, owner) {
            Presence::Alive => {}
            Presence::Gone => dead.push(owner),
            Presence::Unknown(e) => {
                shared
                    .counters
                    .owner_check_errors
                    .fetch_add(1, Ordering::Relaxed);
                log!(
                    shared.logger,
                    Level::Warning,
                    "cannot tell whether pid {} runs ({e}); keeping its ports",
                    owner.pid
                );
            }
        }
    }
    if dead.is_empty() {
        return;
    }
    let mut core = lock(&shared.core);
    let n: usize = dead.iter().map(|&o| core.pool.release_owner(o)).sum();
    let before = core.outside.len();
    core.outside.retain(|(_, o)| dead.binary_search(o).is_err());
    let dropped = before - core.outside.len();
    drop(core);
    log!(
        shared.logger,
        Level::Debug,
        "Reclaimed {n} ports from {} dead owners",
        dead.len()
    );
    if dropped > 0 {
        log!(
            shared.logger,
            Level::Info,
            "Owners gone: dropped {} outside the pool",
            count(dropped as u64, "reservation")
        );
    }
}
