//! `portpicker [PID] [BIND_TIMEOUT]`: prints one unused port, as Python's
//! `python -m portpicker`. See `--help`.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use portpick::{Source, DEFAULT_TIMEOUT, PORTSERVER_ADDRESS_ENV};

const USAGE: &str = "\
usage: portpicker [PID] [BIND_TIMEOUT]
       portpicker --stats [ADDRESS]

Prints one port that is free on TCP and UDP, and a newline.

  PID           the process the port is for (default: our parent, as
                Python's portpicker); a portserver holds the port until it
                exits
  BIND_TIMEOUT  seconds (may be fractional): when no portserver gave the
                port, keep it bound on TCP and UDP for this long after we
                exit, in a helper process, so nothing else grabs it before
                your script uses it. It also keeps the port's lock, so other
                portpick users skip it. Set PORTPICK_HOLD=lock to keep only
                the lock: then your own server can bind the port at once,
                while other portpick users still skip it.
  --stats       print the statistics of the portserver at ADDRESS (default:
                $PORTSERVER_ADDRESS, else @unittest-portserver)

environment:
  PORTSERVER_ADDRESS  ask this portserver first (@name or a socket path)
  PORTPICK_LOCK_DIR   where cross-process port locks live (default: a
                      per-user directory under the temp dir; empty: off)
  PORTPICK_HOLD       'lock' to hold only the lock during BIND_TIMEOUT

example:
  port=\"$(portpicker $$ 1.5)\"
";

/// The hidden first argument of the helper process that holds a port.
const HOLD_ARG: &str = "--portpick-internal-hold";

fn main() -> ExitCode {
    // The tool claims its port across processes unless told otherwise: a
    // claim costs microseconds, the process a millisecond. Set before the
    // process-wide picker reads it, while this is the only thread.
    if std::env::var_os(portpick::LOCK_DIR_ENV).is_none() {
        std::env::set_var(portpick::LOCK_DIR_ENV, portpick::DEFAULT_LOCK_DIR);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(HOLD_ARG) => hold(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--stats") => stats(&args[1..]),
        _ => pick(&args),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("portpicker: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}

fn pick(args: &[String]) -> ExitCode {
    if args.len() > 2 {
        return usage_error(&format!("unexpected argument {:?}", args[2]));
    }
    let pid = match args.first() {
        None => std::os::unix::process::parent_id(),
        Some(a) => match a.parse::<u32>() {
            Ok(pid) => pid,
            Err(_) => return usage_error(&format!("invalid PID {a:?}")),
        },
    };
    let timeout = match args.get(1) {
        None => 0.0,
        Some(a) => match a.parse::<f64>() {
            Ok(t) if (0.0..1e9).contains(&t) => t,
            _ => return usage_error(&format!("invalid BIND_TIMEOUT {a:?}")),
        },
    };
    let picker = portpick::global();
    let (port, source) = match picker.pick_with_source(Some(pid), None) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("portpicker: {e}");
            return ExitCode::from(1);
        }
    };
    if source == Source::Local && timeout > 0.0 {
        if let Err(e) = spawn_holder(port, timeout) {
            eprintln!("portpicker: WARNING: cannot hold port {port} after exit: {e}");
        }
    }
    println!("{port}");
    ExitCode::SUCCESS
}

/// Starts detached copies of ourselves that keep `port` bound (and its
/// lock held) for `seconds`. The bound sockets and the locked file are
/// passed as the helpers' standard streams, so there is no moment where the
/// port is unbound or unlocked; and a helper has none of our streams, so
/// `$(portpicker $$ 1.5)` returns as soon as we exit.
fn spawn_holder(port: u16, seconds: f64) -> std::io::Result<()> {
    use std::os::fd::OwnedFd;
    let lock_only = std::env::var("PORTPICK_HOLD").is_ok_and(|v| v == "lock");
    let mut held: Vec<OwnedFd> = portpick::__private::take_claim(port)
        .into_iter()
        .map(OwnedFd::from)
        .collect();
    if !lock_only {
        let tcp = portpick::__private::hold_tcp(port);
        let udp = portpick::__private::hold_udp(port);
        match (tcp, udp) {
            (Some((_, tcp)), Some((_, udp))) => {
                held.extend(tcp.into_sockets().map(OwnedFd::from));
                held.extend(udp.into_sockets().map(OwnedFd::from));
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "the port was taken before it could be held",
                ))
            }
        }
    }
    spawn_helpers(held, seconds)
}

/// Hands `held` to helpers, three each as their stdin, stdout and stderr
/// (std passes a child no other descriptors without unsafe code). A
/// dual-stack host needs one helper (lock, TCP, UDP); with IPv6-only
/// sockets (`net.ipv6.bindv6only = 1`) each protocol takes two sockets, and
/// a second helper keeps the rest.
fn spawn_helpers(held: Vec<std::os::fd::OwnedFd>, seconds: f64) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut held = held.into_iter().peekable();
    while held.peek().is_some() {
        let mut next = || held.next().map_or_else(Stdio::null, Stdio::from);
        Command::new(&exe)
            .arg(HOLD_ARG)
            .arg(seconds.to_string())
            .stdin(next())
            .stdout(next())
            .stderr(next())
            .process_group(0)
            .spawn()?;
    }
    Ok(())
}

/// The helper: its standard streams are the port's lock and bound sockets.
/// It only waits; exiting releases everything.
fn hold(args: &[String]) -> ExitCode {
    let seconds = args
        .first()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    if seconds.is_finite() && seconds > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }
    ExitCode::SUCCESS
}

fn stats(args: &[String]) -> ExitCode {
    if args.len() > 1 {
        return usage_error(&format!("unexpected argument {:?}", args[1]));
    }
    let address = args
        .first()
        .cloned()
        .or_else(|| {
            std::env::var(PORTSERVER_ADDRESS_ENV)
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| portpick::server::DEFAULT_ADDRESS.to_string());
    match portpick::get_port_server_stats(&address, DEFAULT_TIMEOUT) {
        Ok(stats) => {
            for (name, value) in stats {
                println!("{name} {value}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portpicker: {e}");
            ExitCode::from(1)
        }
    }
}
