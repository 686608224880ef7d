//! Timing for the `harness = false` benches: std only. Each case runs in
//! several rounds; a round's figure is its mean time per iteration; the
//! median round is reported with the spread (fastest and slowest round).
//! Ratios are taken between cases measured in the same run.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Rounds per case.
pub const ROUNDS: usize = 9;

/// The figures of one case.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// Median of the rounds, per iteration.
    pub median: Duration,
    /// Fastest round, per iteration.
    pub min: Duration,
    /// Slowest round, per iteration.
    pub max: Duration,
}

/// Times `f` in `ROUNDS` rounds of `iters` calls (after one warm-up round).
pub fn measure(iters: u32, mut f: impl FnMut()) -> Figure {
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        if round > 0 {
            rounds.push(start.elapsed() / iters);
        }
    }
    from_rounds(rounds)
}

/// Figures from per-round times.
pub fn from_rounds(mut rounds: Vec<Duration>) -> Figure {
    rounds.sort();
    Figure {
        median: rounds[rounds.len() / 2],
        min: rounds[0],
        max: rounds[rounds.len() - 1],
    }
}

/// Figures from single samples (latencies), as a median and a p99.
pub fn from_samples(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.99))
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

/// Prints one table row, and a machine-readable line for benches/compare.sh.
pub fn row(key: &str, what: &str, f: Figure, note: &str) {
    println!(
        "{what:<52} {:>10}  ({} .. {})  {note}",
        fmt(f.median),
        fmt(f.min),
        fmt(f.max)
    );
    eprintln!("BENCH {key} {}", f.median.as_nanos());
}

/// The ratio of two medians, as `2.31x`.
pub fn ratio(a: Figure, b: Figure) -> String {
    format!("{:.2}x", a.median.as_secs_f64() / b.median.as_secs_f64())
}

/// A header line.
pub fn header(title: &str) {
    println!("\n{title}\n{}", "-".repeat(title.len()));
    println!(
        "{:<52} {:>10}  (fastest .. slowest round)",
        "case", "median"
    );
}

/// Kills and reaps a child when dropped.
pub struct Reaper(pub std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A live process to own ports: `sleep 600`.
pub fn sleeper() -> Reaper {
    Reaper(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep"),
    )
}
