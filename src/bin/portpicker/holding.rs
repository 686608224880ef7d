//! The holder process (see `holder.rs` for the caller's side): picks and
//! claims the ports, binds them for BIND_TIMEOUT when asked, answers on
//! stdout, then keeps the claims until the owner has gone and the binds
//! until BIND_TIMEOUT has passed, and exits. Exiting releases everything:
//! the kernel drops the claims' names and the bound sockets with us.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use portpick::__private::server::Owner;

use crate::call::Call;
use crate::holder::{ANSWER_TIMEOUT, PRINTED};
use crate::owner;

/// How often the holder checks that its owner lives: std has no way to
/// wait for the death of a process that is not our child.
const SWEEP: Duration = Duration::from_millis(500);

/// The holder's main: `args` are what `Call::holder_args` wrote.
pub fn run(args: &[String]) -> ExitCode {
    let Some((call, owner)) = Call::from_holder_args(args) else {
        return ExitCode::from(2);
    };
    // Our stderr is /dev/null: the library's warnings go to the caller.
    portpick::__private::collect_warnings();
    // Kept until we exit: its claims end with it.
    let picker = call.want.picker();
    let mut answer = String::new();
    let mut binds = Vec::new();
    let picked = call.want.pick(&picker);
    if let Ok(ports) = &picked {
        if call.bind_timeout > 0.0 {
            binds = bind_all(ports, call.want.address);
        }
    }
    for warning in portpick::__private::take_warnings() {
        answer.push_str(&format!("warning {}\n", warning.replace('\n', " ")));
    }
    match &picked {
        Ok(ports) => ports
            .iter()
            .for_each(|port| answer.push_str(&format!("port {port}\n"))),
        Err(e) => answer.push_str(&format!("error {e}\n")),
    }
    answer.push_str("end\n");
    // A caller that has gone, or never says it printed the ports, gave
    // them to nobody: they go back now.
    if answer_caller(answer.as_bytes(), picked.is_ok()).is_err() || picked.is_err() {
        return ExitCode::from(1);
    }
    hold(owner, binds, Duration::from_secs_f64(call.bind_timeout));
    ExitCode::SUCCESS
}

/// Writes `answer` to the caller's socket (our stdout) and, when it gives
/// ports, waits (at most [`ANSWER_TIMEOUT`]) for the caller's word that
/// they were printed. `Err`: the caller has gone or did not say so in
/// time. A whole answer may sit in the socket's buffer, so a caller killed
/// before it printed would otherwise leave us claiming, for PID's life,
/// ports nobody was told of.
fn answer_caller(answer: &[u8], has_ports: bool) -> io::Result<()> {
    use std::os::fd::AsFd;
    let socket = UnixStream::from(io::stdout().as_fd().try_clone_to_owned()?);
    (&socket).write_all(answer)?;
    if !has_ports {
        return socket.shutdown(Shutdown::Both);
    }
    socket.shutdown(Shutdown::Write)?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut word = [0; PRINTED.len()];
    (&socket).read_exact(&mut word)?;
    if word != PRINTED {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the caller did not say the ports were printed",
        ));
    }
    // Our fd 1 stays open: the caller, and its shell, must see EOF.
    socket.shutdown(Shutdown::Both)
}

/// Binds every port on TCP and UDP: on `address`, else on every family
/// the host has. What cannot be bound (someone bound it since the pick)
/// gets a warning.
fn bind_all(ports: &[u16], address: Option<IpAddr>) -> Vec<OwnedFd> {
    let mut held = Vec::new();
    for &port in ports {
        let fds = match address {
            Some(ip) => bind_at(SocketAddr::new(ip, port)),
            None => bind_everywhere(port),
        };
        match fds {
            Some(fds) => held.extend(fds),
            None => portpick::__private::warn(format_args!(
                "portpicker: warning: cannot keep port {port} bound after exit: another \
                 program bound it meanwhile"
            )),
        }
    }
    held
}

fn bind_at(addr: SocketAddr) -> Option<Vec<OwnedFd>> {
    let tcp = TcpListener::bind(addr).ok()?;
    let udp = UdpSocket::bind(addr).ok()?;
    Some(vec![OwnedFd::from(tcp), OwnedFd::from(udp)])
}

fn bind_everywhere(port: u16) -> Option<Vec<OwnedFd>> {
    let (_, tcp) = portpick::__private::hold_tcp(port)?;
    let (_, udp) = portpick::__private::hold_udp(port)?;
    let tcp = tcp.into_sockets().map(OwnedFd::from);
    Some(tcp.chain(udp.into_sockets().map(OwnedFd::from)).collect())
}

/// Waits until the binds' time is over and the owner has gone.
fn hold(mut owner: Option<Owner>, binds: Vec<OwnedFd>, bound_for: Duration) {
    let binds_end = Instant::now() + bound_for;
    let mut binds = (!binds.is_empty()).then_some(binds);
    loop {
        let now = Instant::now();
        if now >= binds_end {
            binds = None;
        }
        if owner.is_some_and(owner::is_gone) {
            owner = None;
        }
        if binds.is_none() && owner.is_none() {
            return;
        }
        let nap = match binds {
            Some(_) => SWEEP.min(binds_end - now),
            None => SWEEP,
        };
        std::thread::sleep(nap);
    }
}
