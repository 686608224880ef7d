#![allow(dead_code)]

//! Other users and other namespaces: processes run as user `nobody`, a
//! test binary's child modes, the tool's holders.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{can_unshare_net, wait_output, Reaper, TempDir, PATIENCE};

/// Set in a child's environment: which child mode of the test binary to
/// run (a child-mode test returns at once without it).
pub const CHILD_ENV: &str = "PORTPICK_TEST_CHILD";

/// The tool's holders running now with `pid` as their owner.
pub fn holders_for(pid: u32) -> usize {
    holder_pids(pid).len()
}

/// The pids of the tool's holders running now with `pid` as their owner.
pub fn holder_pids(pid: u32) -> Vec<u32> {
    let needle = format!("--portpick-internal-holder\0{pid}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Runs child mode `name` of this test binary in a fresh network namespace
/// and checks that it said `OK`. False: no namespace can be made here.
pub fn in_fresh_netns(name: &str) -> bool {
    if !can_unshare_net() {
        return false;
    }
    let child = Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(CHILD_ENV, name)
        .env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, 6 * PATIENCE);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("{name} OK")),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Copies of the tool and this test binary that user `nobody` can run
/// (root's target directory may not be open to it).
pub struct ForNobody {
    dir: TempDir,
}

impl ForNobody {
    pub fn new(tool: &str) -> Option<ForNobody> {
        use std::os::unix::fs::PermissionsExt;
        if !std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        }) {
            eprintln!("skipped: needs root (to run a process as nobody)");
            return None;
        }
        let dir = TempDir::new("nobody");
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.path(), mode.clone()).unwrap();
        for from in [PathBuf::from(tool), std::env::current_exe().unwrap()] {
            let to = dir.path().join(from.file_name().unwrap());
            std::fs::copy(&from, &to).unwrap();
            std::fs::set_permissions(&to, mode.clone()).unwrap();
        }
        Some(ForNobody { dir })
    }

    pub fn path(&self, of: &str) -> String {
        let name = Path::new(of).file_name().unwrap();
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// This test binary's child mode `name`, run as nobody, its stdout
    /// piped.
    pub fn child(&self, name: &str, env: &[(&str, String)]) -> Reaper {
        let me = self.path(std::env::current_exe().unwrap().to_str().unwrap());
        let mut cmd = as_nobody(&me);
        cmd.args(["--exact", name, "--ignored", "--nocapture"])
            .env(CHILD_ENV, name)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Reaper(cmd.spawn().unwrap())
    }
}

/// `program` run as user and group 65534 (nobody), with no other groups.
pub fn as_nobody(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
    cmd
}

/// Waits (bounded) for a line of `child`'s stdout that contains `word`.
pub fn wait_for_line(child: &mut Reaper, word: &str) -> String {
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let word = word.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&word) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(PATIENCE)
        .expect("the child did not get ready")
}

/// The tool at `path`, with no portpick variable set.
pub fn tool_command(path: &str) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_remove("PORTSERVER_ADDRESS")
        .env_remove(portpick::CLAIMS_ENV);
    cmd
}

pub fn printed_port(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim().parse().unwrap()
}

/// A call for `pid` that gets a port silently (no warning).
pub fn quiet_port(path: &str, pid: u32) -> u16 {
    let out = super::run_bounded(tool_command(path).arg(pid.to_string()));
    let port = printed_port(&out);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    port
}
