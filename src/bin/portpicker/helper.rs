//! Claims that last as long as the process a port is for (`portpicker PID`
//! without a portserver): a detached helper, one per user (and pid
//! namespace), picks and claims the ports, remembers each one's owner (pid and start time, so a reused
//! pid is another owner), and releases an owner's claims within half a
//! second of its death. It exits once no owner it serves is alive.
//!
//! The helper of user U in pid namespace N (its inode number) is found at
//! the abstract datagram name `portpick/helper/v1/U/N`. A call sends it
//! `portpick-helper-v1 PID START` from a name of its own and gets the port
//! back (`0`: none; `PORT unclaimed`: past the helper's descriptor budget). When nobody
//! holds the helper's name, the call binds it, starts the helper with that
//! socket as its stdout, and sends its request, which waits in the
//! socket's queue while the helper starts: a call that finds the name taken
//! has a helper (or one about to run) to ask, so racing calls start one
//! helper, and no descriptor is ever passed over a socket. A call that
//! waits long finds out whether the helper has gone (its name is free
//! again) and then starts another.
//!
//! So only the first call on a host, or the first after every owner has
//! died, starts a process; the others cost a request and an answer. The
//! helper is one thread that sleeps in `recv`, waking twice a second (to
//! check its owners) and once per request.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use portpick::__private::server::{presence, Owner, Presence, ProcFs, ProcessTable};
use portpick::NoFreePortError;

/// The hidden first argument of the helper.
pub const HELPER_ARG: &str = "--portpick-internal-helper";

/// The request's first word, and the version of this little protocol (also
/// in the helper's name, so two versions never talk to each other).
const REQUEST_TAG: &str = "portpick-helper-v1";

/// Marks an answer whose port the helper could not claim (it holds half
/// its open file limit in claims already): `PORT unclaimed`.
const UNCLAIMED: &str = " unclaimed";

/// How often the helper checks that its owners live.
const SWEEP: Duration = Duration::from_millis(500);

/// How long a call waits for an answer before it picks alone.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a waiting call checks that the helper still holds its name.
const RECHECK: Duration = Duration::from_millis(100);

/// A port for `pid`, claimed until `pid` exits when that can be arranged;
/// else (no such process, no `/proc`, no helper) a local pick whose claim
/// ends with us.
pub fn pick_for(pid: u32) -> Result<u16, NoFreePortError> {
    // A port the helper picked can be bound by someone else before we look
    // at it (the kernel hands a port it just took back to the next
    // `bind(0)`, claims or not): ask again, rather than pick a port whose
    // claim would end with this call without saying so.
    for _ in 0..3 {
        match ask_helper(pid) {
            Ok(Answer::Port(port)) => return Ok(port),
            Ok(Answer::NoOwner) => return portpick::__private::global().pick_local(),
            Ok(Answer::Busy) => continue,
            Ok(Answer::NoPort) => break,
            Err(e) => {
                eprintln!(
                    "portpicker: warning: cannot keep the port claimed for pid {pid} ({e}); \
                     its claim ends with this call"
                );
                return portpick::__private::global().pick_local();
            }
        }
    }
    eprintln!(
        "portpicker: warning: the claim helper gave no usable port for pid {pid}; \
         this port's claim ends with this call"
    );
    portpick::__private::global().pick_local()
}

/// What asking the helper gave.
enum Answer {
    /// A port, claimed for the owner's life.
    Port(u16),
    /// Nothing to hold a claim for (pid 1, dead, not in our `/proc`).
    NoOwner,
    /// The helper has no port for us.
    NoPort,
    /// The helper's port is bound by someone already.
    Busy,
}

fn ask_helper(pid: u32) -> io::Result<Answer> {
    use std::os::unix::fs::MetadataExt;
    if pid <= 1 {
        // As the portserver: pid 1 means the caller's parent has gone (it
        // was reparented to init), and a claim for init's life would
        // never end.
        return Ok(Answer::NoOwner);
    }
    let Ok(Some(start)) = ProcFs::new().start_time(pid) else {
        // Dead, invalid, or not in our /proc: nobody to hold it for.
        return Ok(Answer::NoOwner);
    };
    // Per user, and per pid namespace: pids sent to a helper must mean to
    // it what they mean to us (containers may share a network but not
    // pids).
    let uid = std::fs::metadata("/proc/self")?.uid();
    let pid_ns = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino());
    let name = format!("portpick/helper/v1/{uid}/{pid_ns}").into_bytes();
    let helper = abstract_addr(&name)?;
    let reply = reply_socket()?;
    reply.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let request = format!("{REQUEST_TAG} {pid} {start}");
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut buf = [0u8; 16];
    'send: while Instant::now() < deadline {
        match reply.send_to_addr(request.as_bytes(), &helper) {
            Ok(_) => {}
            Err(e) if is_nobody_there(&e) => {
                start_helper_at(&name)?;
                // Ours or a racing call's: either way, send again.
                continue 'send;
            }
            Err(e) => return Err(e),
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            reply.set_read_timeout(Some(left.min(RECHECK)))?;
            match reply.recv_from(&mut buf) {
                Ok((n, from)) => {
                    // Only the helper's name can answer: anyone may send us
                    // a datagram, but nobody else holds that name while
                    // the helper lives.
                    if !is_from(&from, &name) {
                        continue;
                    }
                    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
                    let (number, unclaimed) = match text.strip_suffix(UNCLAIMED) {
                        Some(number) => (number, true),
                        None => (text, false),
                    };
                    let port = number.parse::<u16>().ok().filter(|&p| p != 0);
                    if let (Some(port), true) = (port, unclaimed) {
                        eprintln!(
                            "portpicker: warning: port {port} is not claimed: the claim helper \
                             holds as many claims as its open file limit allows"
                        );
                    }
                    // A port somebody has bound is no answer (a name
                    // squatted by a hostile local user could offer one).
                    return Ok(match port {
                        None => Answer::NoPort,
                        Some(p) if portpick::is_port_free(p) => Answer::Port(p),
                        Some(_) => Answer::Busy,
                    });
                }
                Err(e) if is_timeout(&e) => {
                    // The helper may have exited with our request queued
                    // (it leaves when its last owner dies): then its name
                    // is free, and we start the next one.
                    if start_helper_at(&name)? {
                        continue 'send;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::ErrorKind::TimedOut.into())
}

fn is_nobody_there(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn is_from(from: &SocketAddr, name: &[u8]) -> bool {
    use std::os::linux::net::SocketAddrExt;
    from.as_abstract_name() == Some(name)
}

fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

fn bind(name: &[u8]) -> io::Result<UnixDatagram> {
    UnixDatagram::bind_addr(&abstract_addr(name)?)
}

/// A socket with a name of our own, for the answer: pid and clock make it
/// unique enough, and a clash (another pid namespace) fails the bind, so
/// we try another.
fn reply_socket() -> io::Result<UnixDatagram> {
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..4u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let me = format!("portpick/reply/{}/{nanos}/{i}", std::process::id());
        match bind(me.as_bytes()) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Starts a helper on `name` if nobody holds it. False: somebody does.
fn start_helper_at(name: &[u8]) -> io::Result<bool> {
    use std::os::fd::OwnedFd;
    use std::os::unix::process::CommandExt;
    let socket = match bind(name) {
        Ok(socket) => socket,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(false),
        Err(e) => return Err(e),
    };
    Command::new(std::env::current_exe()?)
        .arg(HELPER_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(socket)))
        .stderr(Stdio::null())
        // Not in the caller's process group: a ^C meant for one script's
        // foreground job does not end every script's claims; each owner's
        // death ends its own.
        .process_group(0)
        // It may outlive the caller by hours: it must not keep the caller's
        // directory busy (an unmount, a removed checkout).
        .current_dir("/")
        .spawn()?;
    Ok(true)
}

/// The helper: stdout is the socket bound at the helper's name.
pub fn run_helper() -> ExitCode {
    use std::os::fd::AsFd;
    let socket = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixDatagram::from(fd),
        Err(_) => return ExitCode::from(1),
    };
    // A reply to a caller that is stuck must not stall the others.
    if socket
        .set_write_timeout(Some(Duration::from_millis(100)))
        .is_err()
    {
        return ExitCode::from(1);
    }
    let mut helper = Helper {
        socket,
        table: ProcFs::new(),
        owners: HashMap::new(),
    };
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        if helper
            .socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            return ExitCode::from(1);
        }
        helper.serve_one();
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + SWEEP;
            helper.sweep();
            // Requests that came in meanwhile are served before leaving, so
            // a caller is not left waiting; one that comes after finds the
            // name free, and starts the next helper.
            if helper.owners.is_empty() && !helper.drain() {
                return ExitCode::SUCCESS;
            }
        }
    }
}

struct Helper {
    socket: UnixDatagram,
    table: ProcFs,
    owners: HashMap<Owner, Vec<u16>>,
}

impl Helper {
    /// Waits for one request (until the read timeout) and answers it.
    /// False when none came.
    fn serve_one(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let (n, from) = match self.socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if !is_timeout(&e) => {
                // Not expected from a bound datagram socket; do not spin.
                std::thread::sleep(SWEEP);
                return false;
            }
            Err(_) => return false,
        };
        let port = match parse_request(&buf[..n]) {
            // The owner must be the process the caller says, alive now: a
            // port for a dead owner would be claimed by nobody's life.
            Some(owner) if matches!(presence(&self.table, owner), Presence::Alive) => {
                match portpick::__private::global().pick_local() {
                    Ok(port) => {
                        self.owners.entry(owner).or_default().push(port);
                        port
                    }
                    Err(_) => 0,
                }
            }
            Some(_) => 0,
            None => return true,
        };
        let mut answer = port.to_string();
        if port != 0 && !portpick::__private::holds_claim(port) {
            answer.push_str(UNCLAIMED);
        }
        if self.socket.send_to_addr(answer.as_bytes(), &from).is_err() && port != 0 {
            // The caller gave up: its port goes back.
            portpick::__private::global().return_port(port);
            for ports in self.owners.values_mut() {
                ports.retain(|&p| p != port);
            }
        }
        true
    }

    /// Releases the claims of owners that have died.
    fn sweep(&mut self) {
        let table = &self.table;
        self.owners.retain(|&owner, ports| {
            // As the portserver: only a sure "gone" releases; out of
            // descriptors, the owner keeps its claims.
            let alive = !matches!(presence(table, owner), Presence::Gone);
            if !alive {
                for &port in ports.iter() {
                    portpick::__private::global().return_port(port);
                }
            }
            alive
        });
    }

    /// Serves every request already queued. True when there was one.
    fn drain(&mut self) -> bool {
        if self.socket.set_nonblocking(true).is_err() {
            return false;
        }
        let mut any = false;
        while self.serve_one() {
            any = true;
        }
        let _ = self.socket.set_nonblocking(false);
        any
    }
}

/// `portpick-helper-v1 PID START`.
fn parse_request(buf: &[u8]) -> Option<Owner> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut words = text.split(' ');
    if words.next()? != REQUEST_TAG {
        return None;
    }
    let pid = words.next()?.parse().ok()?;
    let start = words.next()?.parse().ok()?;
    words.next().is_none().then_some(Owner {
        pid,
        start_time: start,
    })
}
