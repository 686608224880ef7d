//! Claims that last as long as the process a port is for (`portpicker PID`
//! without a portserver): one detached helper per owner process holds the
//! claims of every port picked for it, and exits within half a second of
//! the owner's death.
//!
//! The helper of owner (pid P, start time S) is found at the abstract
//! datagram name `portpick/owner/P/S` (a reused pid has another start
//! time, so it never meets an old helper). The first `portpicker P` binds
//! that name, picks a port, and starts the helper with the name's socket
//! as its stdout and the port's claim as its stdin: nothing is unclaimed or
//! unbound at any moment, and no descriptor is passed over a socket. Later
//! calls for P send the helper a request and get a port it picked and
//! claimed itself: no process is started, which is what makes them cheap.
//! Requests sent while the helper is still starting wait in the socket's
//! queue.
//!
//! The helper is one thread that sleeps in `recv` with a 500 ms timeout:
//! two wake-ups a second when idle, plus one per request.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use portpick::__private::{ProcFs, ProcessTable};
use portpick::NoFreePortError;

/// The hidden first argument of the helper.
pub const OWNER_ARG: &str = "--portpick-internal-owner";

/// The request, and the version of this little protocol.
const REQUEST: &[u8] = b"portpick-owner-v1 pick";

/// How often the helper checks that the owner lives.
const POLL: Duration = Duration::from_millis(500);

/// How long a call waits for a helper's answer before it picks alone.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// A port for `pid`, claimed until `pid` exits when that can be arranged.
/// The bool says whether a helper holds the claim (else it ends with us).
pub fn pick_for(pid: u32) -> Result<(u16, bool), NoFreePortError> {
    let picker = portpick::global();
    let Some(start) = ProcFs::new().start_time(pid) else {
        // Nobody to hold it for (dead, invalid, or not in our /proc).
        return picker.pick_local().map(|port| (port, false));
    };
    let name = format!("portpick/owner/{pid}/{start}").into_bytes();
    for _ in 0..3 {
        match ask(&name) {
            Ok(Some(port)) => return Ok((port, true)),
            Ok(None) => break,
            Err(e) if is_nobody_there(&e) => {}
            Err(e) => {
                eprintln!("portpicker: warning: no answer from the helper of pid {pid}: {e}");
                break;
            }
        }
        // No helper: become the one that starts it.
        match bind(&name) {
            Ok(socket) => return start_helper(socket, pid, start),
            // Another call just did: ask it.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                eprintln!("portpicker: warning: cannot start a claim helper: {e}");
                break;
            }
        }
    }
    picker.pick_local().map(|port| (port, false))
}

/// No helper is bound at the name (or it has just gone).
fn is_nobody_there(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
    )
}

fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

fn bind(name: &[u8]) -> io::Result<UnixDatagram> {
    UnixDatagram::bind_addr(&abstract_addr(name)?)
}

/// Asks the helper at `name` for a port: `Ok(None)` when it has none.
fn ask(name: &[u8]) -> io::Result<Option<u16>> {
    let helper = abstract_addr(name)?;
    // Our own name, for the answer: pid and clock make it unique enough;
    // a clash (another pid namespace) fails the bind and we try the next.
    let mut reply = None;
    for i in 0..4u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let me = format!("portpick/reply/{}/{nanos}/{i}", std::process::id());
        if let Ok(socket) = bind(me.as_bytes()) {
            reply = Some(socket);
            break;
        }
    }
    let reply = reply.ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no reply name"))?;
    reply.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    reply.send_to_addr(REQUEST, &helper)?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut buf = [0u8; 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        reply.set_read_timeout(Some(left))?;
        let (n, from) = reply.recv_from(&mut buf)?;
        // Only the helper's name can answer: anyone else could send us a
        // datagram, but nobody else can hold that name while it lives.
        {
            use std::os::linux::net::SocketAddrExt;
            if from.as_abstract_name() != Some(name) {
                continue;
            }
        }
        let port = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|&p| p != 0);
        // A port somebody has bound already is no answer (a name squatted
        // by a hostile local user could offer one).
        return Ok(port.filter(|&p| portpick::is_port_free(p)));
    }
}

/// Picks the first port for the owner and starts the helper that holds its
/// claim, and answers later calls on `socket`.
fn start_helper(socket: UnixDatagram, pid: u32, start: u64) -> Result<(u16, bool), NoFreePortError> {
    use std::os::fd::OwnedFd;
    use std::os::unix::process::CommandExt;
    let port = portpick::global().pick_local()?;
    let Some(claim) = portpick::__private::take_claim(port) else {
        // Claims unavailable (one warning was given): nothing to hold.
        return Ok((port, false));
    };
    let spawned = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg(OWNER_ARG)
            .arg(pid.to_string())
            .arg(start.to_string())
            .stdin(Stdio::from(claim))
            .stdout(Stdio::from(OwnedFd::from(socket)))
            .stderr(Stdio::null())
            // Not in the caller's process group: a ^C meant for a script's
            // foreground job does not end the claims early; the owner's
            // death does.
            .process_group(0)
            .spawn()
    });
    match spawned {
        Ok(_) => Ok((port, true)),
        Err(e) => {
            eprintln!("portpicker: warning: cannot start a claim helper: {e}");
            Ok((port, false))
        }
    }
}

/// The helper: stdin is the first port's claim, stdout the socket bound at
/// the owner's name. It exits when the owner is gone, which releases every
/// claim at once.
pub fn run_helper(args: &[String]) -> ExitCode {
    use std::os::fd::AsFd;
    let (Some(pid), Some(start)) = (
        args.first().and_then(|a| a.parse::<u32>().ok()),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        return ExitCode::from(2);
    };
    let socket = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixDatagram::from(fd),
        Err(_) => return ExitCode::from(1),
    };
    let table = ProcFs::new();
    let picker = portpick::global();
    let mut buf = [0u8; 64];
    // A reply to a caller that is stuck must not stall the others.
    let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
    if socket.set_read_timeout(Some(POLL)).is_err() {
        return ExitCode::from(1);
    }
    // Checked before every wait and every answer: a request from a dead
    // owner's script gets no port that would outlive it.
    while table.start_time(pid) == Some(start) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if &buf[..n] == REQUEST => {
                if table.start_time(pid) != Some(start) {
                    break;
                }
                let answer = match picker.pick_local() {
                    Ok(port) => port.to_string(),
                    Err(_) => "0".to_string(),
                };
                if socket.send_to_addr(answer.as_bytes(), &from).is_err() {
                    // The caller gave up: its port goes back.
                    if let Ok(port) = answer.parse::<u16>() {
                        picker.return_port(port);
                    }
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => std::thread::sleep(POLL),
        }
    }
    ExitCode::SUCCESS
}
