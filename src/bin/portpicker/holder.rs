//! The caller's side of a holder: `portpicker PID` without a portserver
//! starts a copy of itself (the holder) that picks and claims the ports,
//! binds them when BIND_TIMEOUT asks, writes them to its stdout (a pipe to
//! the caller) and then waits: it drops the binds when BIND_TIMEOUT has
//! passed and the claims when PID has gone (see `holding.rs`).
//!
//! One holder per call, owned by nobody else: there is no name another
//! user could take first, no protocol to flood, and a job's cleanup that
//! kills the job's processes ends that job's claims only.
//!
//! The holder gets none of the caller's streams (stdin and stderr are
//! `/dev/null`, stdout a pipe of its own), so `$(portpicker $$)` returns as
//! soon as the caller exits. Std cannot close a child's stdout from within
//! without unsafe code, so the answer ends with an `end` line instead of
//! EOF: `port N` per port, `warning TEXT` per warning to show, or `error
//! TEXT` when no port could be picked.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use portpick::__private::server::Owner;

use crate::call::Call;

/// The hidden first argument of the holder.
pub const HOLDER_ARG: &str = "--portpick-internal-holder";

/// How long a call waits for its holder's answer before it kills it and
/// picks alone. Far above a holder's few milliseconds, for a loaded host.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest answer read: a holder's answer is a few lines.
const ANSWER_LIMIT: u64 = 64 * 1024;

/// What the holder said.
#[derive(Debug, Default)]
pub struct Answer {
    /// The ports, claimed for the owner's life (and bound, if asked).
    pub ports: Vec<u16>,
    /// Warnings to show, whole lines.
    pub warnings: Vec<String>,
    /// Why no port could be picked.
    pub error: Option<String>,
}

/// Starts a holder for `call` and waits (at most [`ANSWER_TIMEOUT`]) for
/// its answer. The child is returned so that the caller can kill it when
/// the ports cannot be printed. `Err`: no holder (a process limit, say),
/// or none that answered; none is left running.
pub fn start(call: &Call, owner: Option<Owner>) -> io::Result<(Child, Answer)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(HOLDER_ARG)
        .args(call.holder_args(owner))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Not in the caller's process group: a ^C meant for a script's
        // foreground job does not end the claims of the shell that runs
        // it; the owner's death ends them.
        .process_group(0)
        // It may outlive the caller by hours: it must not keep the
        // caller's directory busy (an unmount, a removed checkout).
        .current_dir("/")
        .spawn()?;
    let Some(stdout) = child.stdout.take() else {
        kill(child);
        return Err(io::Error::new(
            io::ErrorKind::Other,
            "no pipe to the holder",
        ));
    };
    // A thread, since std has no timed read on a pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_answer(stdout));
    });
    let answer = match rx.recv_timeout(ANSWER_TIMEOUT) {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            kill(child);
            return Err(e);
        }
        Err(_) => {
            kill(child);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the holder gave no answer within {ANSWER_TIMEOUT:?}"),
            ));
        }
    };
    Ok((child, answer))
}

/// Ends a holder (whose ports then go back), and reaps it.
pub fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn read_answer(stdout: ChildStdout) -> io::Result<Answer> {
    let mut reader = BufReader::new(stdout.take(ANSWER_LIMIT));
    let mut answer = Answer::default();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the holder exited without an answer",
            ));
        }
        let line = line.trim_end_matches('\n');
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "end" => return Ok(answer),
            "port" => match rest.parse::<u16>() {
                Ok(port) if port != 0 => answer.ports.push(port),
                _ => return Err(bad_line(line)),
            },
            "warning" => answer.warnings.push(rest.to_string()),
            "error" => answer.error = Some(rest.to_string()),
            _ => return Err(bad_line(line)),
        }
    }
}

fn bad_line(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the holder answered {line:?}"),
    )
}
