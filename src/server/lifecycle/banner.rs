//! The line an operator reads when the server starts: where it listens,
//! which ports it hands out, how many one process may hold, and where
//! reservations are kept.

use crate::server::config::ServerConfig;
use crate::server::log::count;
use crate::server::ranges::format_port_ranges;

/// Ranges shown before "and N more ranges".
const RANGES_SHOWN: usize = 8;

/// `Serving on ADDR: pool 15000-24999 (10000 ports), at most 1000 ports per
/// pid, no state file`. `managed` is the pool's count of ports.
pub(super) fn serving_line(config: &ServerConfig, managed: u64) -> String {
    let quota = match config.max_ports_per_pid {
        0 => "no per-pid limit".to_string(),
        n => format!("at most {} per pid", count(n as u64, "port")),
    };
    let state = match &config.state_file {
        None => "no state file".to_string(),
        Some(path) => format!("state file {}", path.display()),
    };
    format!(
        "Serving on {}: pool {} ({}), {quota}, {state}",
        config.address,
        format_port_ranges(&config.ports, RANGES_SHOWN),
        count(managed, "port"),
    )
}

#[cfg(test)]
mod tests {
    use super::serving_line;
    use crate::server::config::ServerConfig;
    use std::path::PathBuf;

    #[test]
    fn the_defaults_in_one_line() {
        let config = ServerConfig::default();
        assert_eq!(
            serving_line(&config, 10_000),
            "Serving on @unittest-portserver: pool 15000-24999 (10000 ports), \
             at most 1000 ports per pid, no state file"
        );
    }

    #[test]
    fn one_port_no_quota_and_a_state_file() {
        let config = ServerConfig::new("/run/ps.sock".parse().unwrap())
            .ports([20000])
            .max_ports_per_pid(0)
            .state_file(Some(PathBuf::from("/var/lib/ps/state")));
        assert_eq!(
            serving_line(&config, 1),
            "Serving on /run/ps.sock: pool 20000 (1 port), no per-pid limit, \
             state file /var/lib/ps/state"
        );
        let config = config.max_ports_per_pid(1);
        assert!(serving_line(&config, 1).contains(", at most 1 port per pid, "));
    }
}
