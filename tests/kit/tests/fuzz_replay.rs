//! Replays every fuzz seed and every crash ever found (`tests/data/fuzz/
//! <target>/`) through the same checks the fuzz targets run, then a few
//! thousand cheap mutations of them, so plain `cargo test` on stable
//! exercises what `cargo fuzz` does.

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("request", portpick::__private::fuzz::request),
    ("stat", portpick::__private::fuzz::stat),
    ("ranges", portpick::__private::fuzz::ranges),
    ("state", portpick::__private::fuzz::state),
    ("pool_ops", portpick::__private::fuzz::pool_ops),
];

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data/fuzz")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn run(target: &str, f: Target) {
    for (path, data) in seeds(target) {
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn request_seeds() {
    run(TARGETS[0].0, TARGETS[0].1);
}

#[test]
fn stat_seeds() {
    run(TARGETS[1].0, TARGETS[1].1);
}

#[test]
fn ranges_seeds() {
    run(TARGETS[2].0, TARGETS[2].1);
}

#[test]
fn state_seeds() {
    run(TARGETS[3].0, TARGETS[3].1);
}

#[test]
fn pool_ops_seeds() {
    run(TARGETS[4].0, TARGETS[4].1);
}

/// xorshift64*: a fixed seed, so a failure here repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates a seed the way a fuzzer's first steps do: flip, insert,
/// delete, duplicate, splice in an interesting byte.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\n\r -+0123456789()@,x\xff\x00";
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(data.len() + 1);
                data.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            2 if !data.is_empty() => {
                let i = rng.below(data.len());
                data.remove(i);
            }
            3 if !data.is_empty() && data.len() < 4096 => {
                let i = rng.below(data.len());
                let j = i + rng.below(data.len() - i);
                let piece = data[i..=j.min(data.len() - 1)].to_vec();
                data.splice(i..i, piece);
            }
            _ => {
                let i = rng.below(data.len() + 1);
                data.insert(i, rng.next() as u8);
            }
        }
    }
}

/// Feeds `target` `count` mutations of its seeds; the rng seed differs per
/// target but is fixed, so a failure repeats.
fn mutations(target: &str, f: Target, count: usize) {
    let salt = target
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(b));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ salt);
    let seeds = seeds(target);
    for _ in 0..count {
        let mut data = seeds[rng.below(seeds.len())].1.clone();
        mutate(&mut rng, &mut data);
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(
            result.is_ok(),
            "{target} fails on {data:?}; add it to tests/data/fuzz/{target}/"
        );
    }
}

#[test]
fn request_mutations() {
    mutations(TARGETS[0].0, TARGETS[0].1, 2000);
}

#[test]
fn stat_mutations() {
    mutations(TARGETS[1].0, TARGETS[1].1, 2000);
}

#[test]
fn ranges_mutations() {
    mutations(TARGETS[2].0, TARGETS[2].1, 2000);
}

#[test]
fn state_mutations() {
    mutations(TARGETS[3].0, TARGETS[3].1, 2000);
}

#[test]
fn pool_ops_mutations() {
    // Each input is up to 256 steps, each checking the whole pool: fewer
    // inputs keep this near the parsers' time in a debug build.
    mutations(TARGETS[4].0, TARGETS[4].1, 500);
}
