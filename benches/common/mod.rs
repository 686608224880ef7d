//! Timing for the `harness = false` benches: std only. Each case runs in
//! several rounds; a round's figure is its mean time per iteration; the
//! median round is reported with the spread (fastest and slowest round).
//!
//! Cases that are compared run *interleaved*: round 1 of every case, then
//! round 2 of every case, and so on. A shared 2-core machine drifts by 2-5x
//! within seconds (other jobs, frequency), so a ratio is taken round by
//! round (case and floor measured a few milliseconds apart) and the median
//! of those per-round ratios is reported.
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --benches`) every
//! case runs a few iterations only, as a smoke test.
#![allow(dead_code)]

mod procs;
#[allow(unused_imports)]
pub use procs::*;

use std::time::{Duration, Instant};

/// Whether this is a real run (`cargo bench`) rather than a smoke test.
pub fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Rounds per case (3 in a smoke test).
pub fn rounds() -> usize {
    if full() {
        9
    } else {
        3
    }
}

/// `n` iterations in a real run, a few in a smoke test.
pub fn iters(n: u32) -> u32 {
    if full() {
        n
    } else {
        n.clamp(1, 5)
    }
}

/// The figures of one case.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Median of the rounds, per iteration.
    pub median: Duration,
    /// Fastest round, per iteration.
    pub min: Duration,
    /// Slowest round, per iteration.
    pub max: Duration,
    /// Every round, per iteration, in the order run.
    pub rounds: Vec<Duration>,
}

/// Times `f` in `rounds()` rounds of `n` calls (after one warm-up round).
pub fn measure(n: u32, f: impl FnMut()) -> Figure {
    let mut f = f;
    interleaved(n, &mut [&mut f]).remove(0)
}

/// Times each case in turn, round by round, so that cases compared with
/// each other see the same machine. One warm-up round first.
pub fn interleaved(n: u32, cases: &mut [&mut dyn FnMut()]) -> Vec<Figure> {
    let n = iters(n);
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..=self::rounds() {
        for (i, f) in cases.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            if round > 0 {
                rounds[i].push(start.elapsed() / n);
            }
        }
    }
    rounds.into_iter().map(from_rounds).collect()
}

/// Figures from per-round times.
pub fn from_rounds(rounds: Vec<Duration>) -> Figure {
    let mut sorted = rounds.clone();
    sorted.sort();
    Figure {
        median: sorted[sorted.len() / 2],
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        rounds,
    }
}

/// Figures from single samples (latencies): median, and min..max as spread.
pub fn from_samples(samples: Vec<Duration>) -> Figure {
    from_rounds(samples)
}

/// The `q` quantile of some samples.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Formats a duration with a unit that keeps three digits.
pub fn fmt(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Width of the "case" column.
pub const W: usize = 50;

/// Prints one table row, and a machine-readable line (`BENCH key ns`) on
/// stderr for benches/compare.sh.
pub fn row(key: &str, what: &str, f: &Figure, note: &str) {
    println!(
        "{what:<W$} {:>9}  {:>19}  {note}",
        fmt(f.median),
        format!("{}..{}", fmt(f.min), fmt(f.max)),
    );
    eprintln!("BENCH {key} {}", f.median.as_nanos());
}

/// A machine-readable figure that is not a time.
pub fn record(key: &str, value: impl std::fmt::Display) {
    eprintln!("BENCH {key} {value}");
}

/// `a / b`: the median of per-round ratios when both ran interleaved
/// (same number of rounds), else the ratio of the medians.
pub fn ratio_of(a: &Figure, b: &Figure) -> f64 {
    if a.rounds.len() == b.rounds.len() && !a.rounds.is_empty() {
        let mut r: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64().max(1e-12))
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    } else {
        a.median.as_secs_f64() / b.median.as_secs_f64().max(1e-12)
    }
}

/// [`ratio_of`] as `2.31x`, also recorded as `BENCH ratio_<key>`.
pub fn ratio(key: &str, a: &Figure, b: &Figure) -> String {
    let r = ratio_of(a, b);
    eprintln!("BENCH ratio_{key} {r:.3}");
    format!("{r:.2}x")
}

/// The first line of a bench: what, how many rounds, and how busy the
/// machine was (figures from a loaded machine say so).
pub fn banner(what: &str) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "{what}: {} rounds{}; {cores} cores, load average {}",
        rounds(),
        if full() {
            ""
        } else {
            " (smoke test: pass --bench)"
        },
        load.join(" ")
    );
    println!("ratios are medians of per-round ratios of cases run interleaved");
}

/// A header line.
pub fn header(title: &str) {
    println!("\n{title}\n{}", "-".repeat(title.len()));
    println!(
        "{:<W$} {:>9}  {:>19}  vs",
        "case", "median", "spread (rounds)"
    );
}

/// Kills and reaps a child when dropped.
pub struct Reaper(pub std::process::Child);

impl Reaper {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A live process to own ports: `sleep 300`, killed and reaped on drop.
pub fn sleeper() -> Reaper {
    Reaper(
        std::process::Command::new("sleep")
            .arg("300")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    )
}
