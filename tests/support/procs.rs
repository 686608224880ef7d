#![allow(dead_code)]

//! Child processes: live ones to kill, dead pids, bounded waits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps a child when dropped, even when a test panics.
pub struct Reaper(pub Child);

impl Reaper {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills (SIGKILL) and reaps the child now.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A live process that the test can kill: `sleep 300`.
pub fn sleeper() -> Reaper {
    Reaper(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Waits for a child's output, killing it when `limit` passes.
pub fn wait_output(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to completion with no stdin, its output captured, bounded by
/// `PATIENCE`.
pub fn run_bounded(cmd: &mut Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, super::PATIENCE)
}

/// Whether this host lets us make a network namespace (`unshare -n`): root,
/// or user namespaces. A test that needs one says it skipped otherwise.
pub fn can_unshare_net() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot make a network namespace here (`unshare -n` failed)");
    }
    ok
}

/// Whether these tests run under an emulator (qemu-user through binfmt, as
/// `.ci/aarch64` and `.ci/armv7` run them): the host's `uname -m` (a native
/// program) names another architecture than the one we were built for.
/// qemu-user starts threads of its own, so a test that allows a process
/// no thread (`--nproc=1`) cannot run there.
pub fn emulated() -> bool {
    let Ok(out) = Command::new("uname").arg("-m").output() else {
        return false;
    };
    let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let host = match host.as_str() {
        "armv7l" | "armv8l" | "armv6l" => "arm",
        "i686" | "i586" | "i386" => "x86",
        other => other,
    };
    !host.is_empty() && host != std::env::consts::ARCH
}

/// Whether this host lets us make a pid namespace with its own /proc
/// (`unshare -pf --mount-proc`): root, or user namespaces. A test that
/// needs one says it skipped otherwise.
pub fn can_unshare_pid() -> bool {
    let ok = Command::new("unshare")
        .args(["-pf", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot make a pid namespace here (`unshare -pf --mount-proc` failed)");
    }
    ok
}

/// The lines a child prints, read on a thread of their own so that a test
/// waits for each with a bound.
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    /// Starts reading `out` (a child's stdout) line by line.
    pub fn of(out: impl std::io::Read + Send + 'static) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line, within `PATIENCE`; panics saying `what` was awaited.
    pub fn next(&self, what: &str) -> String {
        self.0
            .recv_timeout(super::PATIENCE)
            .unwrap_or_else(|_| panic!("no line: {what}"))
    }
}
