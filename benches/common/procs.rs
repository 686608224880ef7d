//! Processes as the benches see them: the tool's holders, fields of
//! `/proc/PID/status` and `/proc/PID/smaps_rollup`.

use std::process::Command;
use std::time::{Duration, Instant};

/// The holders of our tool binary running in our network namespace.
pub fn our_holders(tool: &str) -> Vec<u32> {
    let net = std::fs::read_link("/proc/self/ns/net").ok();
    let tool = std::fs::canonicalize(tool).ok();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--portpick-internal-holder"))
                && std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() == net
                && std::fs::read_link(format!("/proc/{pid}/exe")).ok() == tool
        })
        .collect()
}

/// Ends our holders now (so that the next call finds none running).
pub fn kill_holders(tool: &str) {
    for pid in our_holders(tool) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !our_holders(tool).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A field of `/proc/PID/status` (`VmRSS`, `voluntary_ctxt_switches`...)
/// as a number.
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    proc_field(pid, "status", field)
}

/// A field of `/proc/PID/FILE` (`Name: number ...`) as a number.
pub fn proc_field(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
