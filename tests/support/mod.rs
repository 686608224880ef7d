//! Shared helpers for the integration tests, by topic: unique names and
//! temp dirs, child processes, ports, portservers in the test process and
//! the example portserver as a child. Every wait here is bounded.
#![allow(dead_code, unused_imports)]

mod claims;
mod daemon;
mod logs;
mod names;
mod others;
mod ports;
mod procs;
mod servers;

pub use claims::*;
pub use daemon::*;
pub use logs::*;
pub use names::*;
pub use others::*;
pub use ports::*;
pub use procs::*;
pub use servers::*;

use std::time::{Duration, Instant};

/// A generous bound for anything that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `f` until it is true or `PATIENCE` runs out; returns the last value.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f(thread index)` on `threads` threads at once and gathers what
/// they return, in thread order.
pub fn in_threads<T: Send>(threads: usize, f: impl Fn(usize) -> Vec<T> + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn({
                    let f = &f;
                    move || f(t)
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}
