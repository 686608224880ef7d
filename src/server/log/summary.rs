//! The one line `--verbose` logs each minute: what happened since the last
//! one, and how full the pool is. Every statistic is for
//! `portpicker --stats ADDR`, not the log.

use super::count;

/// The line for the statistics `now`, given those of the last summary
/// (`before`, empty at first) `secs` seconds ago: "Last 60 s: 12
/// allocations, 1 denied, 4 ports reclaimed; 20 of 1000 ports held by 3
/// owners".
pub(crate) fn stats_summary(before: &[(&str, u64)], now: &[(&str, u64)], secs: u64) -> String {
    let get = |stats: &[(&str, u64)], name: &str| {
        stats
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |&(_, v)| v)
    };
    // Counters only grow; saturating keeps a reset or a missing name at 0.
    let delta = |name: &str| get(now, name).saturating_sub(get(before, name));
    format!(
        "Last {secs} s: {}, {} denied, {} reclaimed; {} of {} held by {}",
        count(delta("total-allocations"), "allocation"),
        delta("denied-allocations"),
        count(delta("ports-reclaimed"), "port"),
        get(now, "num-ports-held"),
        count(get(now, "num-ports-managed"), "port"),
        count(get(now, "num-owners"), "owner"),
    )
}

#[cfg(test)]
mod tests {
    use super::stats_summary;

    #[test]
    fn one_line_of_differences_and_the_pool_now() {
        let before = [
            ("total-allocations", 10),
            ("denied-allocations", 2),
            ("ports-reclaimed", 3),
        ];
        let now = [
            ("total-allocations", 11),
            ("denied-allocations", 2),
            ("num-ports-managed", 1000),
            ("num-ports-held", 20),
            ("num-owners", 1),
            ("ports-reclaimed", 7),
        ];
        assert_eq!(
            stats_summary(&before, &now, 60),
            "Last 60 s: 1 allocation, 0 denied, 4 ports reclaimed; 20 of 1000 ports held by 1 owner"
        );
        assert_eq!(
            stats_summary(&[], &now[..1], 5),
            "Last 5 s: 11 allocations, 0 denied, 0 ports reclaimed; 0 of 0 ports held by 0 owners"
        );
    }
}
