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
//! `/dev/null`, stdout a connected unix socket of its own), so
//! `$(portpicker $$)` returns as soon as the caller exits. A socket rather
//! than a pipe: the caller can read it with a timeout, and the holder can
//! shut it down once it has answered (std cannot close fd 1 without unsafe
//! code). The answer is lines: `port N` per port, `warning TEXT` per
//! warning to show, or `error TEXT` when no port could be picked, then
//! `end` (an answer cut short, by a crash say, is no answer).
//!
//! Once the caller has printed the ports it writes [`PRINTED`] back: a
//! caller that dies before (a SIGKILL, a ^C) or takes longer than
//! [`ANSWER_TIMEOUT`] to print has given the ports to nobody, and its
//! holder, which gets EOF or no word in time, exits and frees them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portpick::__private::server::Owner;

use crate::call::Call;

/// The hidden first argument of the holder.
pub const HOLDER_ARG: &str = "--portpick-internal-holder";

/// How long a call waits for its holder's answer before it kills it and
/// picks alone. Far above a holder's few milliseconds, for a loaded host.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the caller writes back once it has printed the ports.
pub const PRINTED: &[u8] = b"printed\n";

/// Room in an answer for what is not a port: warnings, an error, `end`.
const ANSWER_ROOM: u64 = 64 * 1024;

/// The longest answer read for `count` ports: a `port N` line per port
/// (11 bytes at most: `--count 65535` is 704 kB) and [`ANSWER_ROOM`].
fn answer_limit(count: usize) -> u64 {
    let line = "port 65535\n".len() as u64;
    (count as u64)
        .saturating_mul(line)
        .saturating_add(ANSWER_ROOM)
}

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

/// A holder that has answered and waits to hear that its ports were
/// printed.
#[derive(Debug)]
pub struct Holder {
    child: Child,
    socket: UnixStream,
}

impl Holder {
    /// Tells the holder that its ports were printed: it keeps them.
    ///
    /// # Errors
    ///
    /// The holder has gone (it waited longer than [`ANSWER_TIMEOUT`], or
    /// was killed): its claims and binds have ended.
    pub fn printed(self) -> io::Result<()> {
        (&self.socket).write_all(PRINTED)
    }

    /// Ends the holder (whose ports then go back), and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a holder for `call` and waits (at most [`ANSWER_TIMEOUT`]) for
/// its answer. The holder is returned so that the caller can tell it the
/// ports were printed, or kill it when they cannot be. `Err`: no holder
/// (a process limit, say), or none that answered; none is left running.
pub fn start(call: &Call, owner: Option<Owner>) -> io::Result<(Holder, Answer)> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new(this_program()?)
        .arg0("portpicker")
        .arg(HOLDER_ARG)
        .args(call.holder_args(owner))
        // What we made of the claims switch, so that a value we warned
        // about is not warned about twice.
        .env(
            portpick::CLAIMS_ENV,
            if portpick::__private::claims_on() {
                "on"
            } else {
                "off"
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        // Not in the caller's process group: a ^C meant for a script's
        // foreground job does not end the claims of the shell that runs
        // it; the owner's death ends them.
        .process_group(0)
        // It may outlive the caller by hours: it must not keep the
        // caller's directory busy (an unmount, a removed checkout).
        .current_dir("/")
        .spawn()?;
    // The Command and its copy of `theirs` are gone: EOF comes when the
    // holder shuts its end down or exits.
    let limit = answer_limit(call.want.count());
    match read_answer(&ours, limit, Instant::now() + ANSWER_TIMEOUT) {
        Ok(answer) => Ok((
            Holder {
                child,
                socket: ours,
            },
            answer,
        )),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Our own binary. On Linux `/proc/self/exe`, which (read by the child
/// before it execs) is this very file even when it has been replaced or
/// deleted since we started (an upgrade, a rebuild).
fn this_program() -> io::Result<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        Ok("/proc/self/exe".into())
    } else {
        std::env::current_exe()
    }
}

fn read_answer(socket: &UnixStream, limit: u64, deadline: Instant) -> io::Result<Answer> {
    let mut reader = BufReader::new(socket.take(limit));
    let mut answer = Answer::default();
    let mut line = String::new();
    loop {
        line.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        socket.set_read_timeout(Some(left))?;
        let read = match reader.read_line(&mut line) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(late()),
            read => read?,
        };
        if read == 0 {
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

fn late() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("the holder gave no answer within {ANSWER_TIMEOUT:?}"),
    )
}

fn bad_line(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the holder answered {line:?}"),
    )
}
