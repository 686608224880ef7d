#![allow(dead_code)]

//! The example portserver as a child process, with its log.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use super::{eventually, run_bounded, Reaper, PATIENCE};

/// Path of a binary cargo built for the examples (`target/*/examples/NAME`).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds examples; run `cargo build --examples`",
        path.display()
    );
    path
}

/// The example portserver running as a child process.
pub struct ServerProcess {
    pub child: Reaper,
    pub address: String,
    /// Every stderr line so far (a thread keeps reading them).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `portserver` with `args` on `address` and waits for
    /// `Serving on`. Panics with the log when it exits or does not serve.
    pub fn start(address: &str, args: &[&str]) -> ServerProcess {
        Self::try_start(address, args)
            .unwrap_or_else(|log| panic!("portserver did not start serving; its log:\n{log}"))
    }

    /// As `start`, but gives the log back when the server does not serve.
    pub fn try_start(address: &str, args: &[&str]) -> Result<ServerProcess, String> {
        let mut cmd = Command::new(example_path("portserver"));
        cmd.arg(format!("--portserver_address={address}"))
            .args(args);
        Self::try_start_command(cmd, address)
    }

    /// Starts a prepared portserver command that listens on `address`.
    pub fn start_command(cmd: Command, address: &str) -> ServerProcess {
        Self::try_start_command(cmd, address)
            .unwrap_or_else(|log| panic!("portserver did not start serving; its log:\n{log}"))
    }

    fn try_start_command(mut cmd: Command, address: &str) -> Result<ServerProcess, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Reaper(cmd.spawn().unwrap());
        let stderr = child.0.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        read_lines(stderr, Arc::clone(&log), tx);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Serving on") => break,
                Ok(_) => continue,
                Err(_) => {
                    child.kill();
                    return Err(log.lock().unwrap().join("\n"));
                }
            }
        }
        Ok(ServerProcess {
            child,
            address: address.to_string(),
            log,
        })
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        eventually(|| self.log.lock().unwrap().iter().any(|l| l.contains(needle)))
    }
}

fn read_lines(stderr: ChildStderr, log: Arc<Mutex<Vec<String>>>, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
}

/// Runs the example portserver to completion (for flag errors), bounded.
pub fn run_portserver(args: &[&str]) -> std::process::Output {
    run_bounded(Command::new(example_path("portserver")).args(args))
}

/// `--portserver_state_file=PATH`.
pub fn state_arg(path: &std::path::Path) -> String {
    format!("--portserver_state_file={}", path.display())
}

/// `--portserver_static_pool=` with each of `ports` as a range of its own.
pub fn pool_arg(ports: &[u16]) -> String {
    let ranges: Vec<String> = ports.iter().map(|p| format!("{p}-{p}")).collect();
    format!("--portserver_static_pool={}", ranges.join(","))
}

/// The lines `PORT PID START` of a state file, header skipped.
pub fn journal(path: &std::path::Path) -> Vec<(u16, u32, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("portpick-state 1"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
pub fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    portpick::__private::server::parse_stat(&stat)
        .unwrap()
        .start_time
}
