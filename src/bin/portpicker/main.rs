//! `portpicker [PID] [BIND_TIMEOUT]`: prints one unused port, as Python's
//! `python -m portpicker`. See `--help`.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use portpick::{DEFAULT_TIMEOUT, PORTSERVER_ADDRESS_ENV};

mod args;
mod commands;
#[cfg(target_os = "linux")]
mod helper;

const USAGE: &str = "\
usage: portpicker [PID] [BIND_TIMEOUT]
       portpicker --stats [ADDRESS]

Prints one port that is free on TCP and UDP, and a newline.

  PID           the process the port is for (default: our parent, as
                Python's portpicker). A portserver holds the port until PID
                exits. Without one, the port is claimed for as long as PID
                lives (Linux), by a helper process shared by your calls:
                other portpick users skip the port, while PID can bind it
                at once
  BIND_TIMEOUT  seconds (may be fractional, at most 86400: a day): when no
                portserver gave the port, also keep it bound on TCP and UDP
                for this long after we exit, as Python's portpicker does
                (nothing can bind it meanwhile, not even PID)
  --stats       print the statistics of the portserver at ADDRESS (default:
                $PORTSERVER_ADDRESS, else @unittest-portserver)

environment:
  PORTSERVER_ADDRESS  ask this portserver first (@name or a socket path)
  PORTPICK_CLAIMS     'off': no cross-process claims, as Python's portpicker

exit status: 0 with a port, 1 without one (the reason on stderr), 2 for
bad arguments

example:
  port=\"$(portpicker $$)\"
";

/// The hidden first argument of the helper process that keeps a port bound.
const HOLD_ARG: &str = "--portpick-internal-hold";

/// The longest BIND_TIMEOUT: a day. Holding a port longer after the tool
/// has exited is a mistake (a typo'd number), not a plan.
const MAX_BIND_TIMEOUT: f64 = 86_400.0;

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => return usage_error(&format!("argument {arg:?} is not valid UTF-8")),
        }
    }
    match args.first().map(String::as_str) {
        Some(HOLD_ARG) => hold(&args[1..]),
        #[cfg(target_os = "linux")]
        Some(helper::HELPER_ARG) => helper::run_helper(),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--stats") => stats(&args[1..]),
        _ => commands::dispatch(&args).unwrap_or_else(|| pick(&args)),
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
            Ok(t) if (0.0..=MAX_BIND_TIMEOUT).contains(&t) => t,
            _ => {
                return usage_error(&format!(
                    "invalid BIND_TIMEOUT {a:?}: seconds from 0 to {MAX_BIND_TIMEOUT}"
                ))
            }
        },
    };
    let picker = portpick::__private::global();
    // The portserver first, as Python's tool; its ports are its own.
    if let Ok(address) = std::env::var(PORTSERVER_ADDRESS_ENV) {
        if !address.is_empty() {
            match picker.get_port_from_port_server(&address, Some(pid)) {
                Ok(port) => {
                    println!("{port}");
                    return ExitCode::SUCCESS;
                }
                Err(e) => eprintln!("portpicker: {e}; picking a port locally"),
            }
        }
    }
    let port = match pick_local(pid) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("portpicker: {e}");
            return ExitCode::from(1);
        }
    };
    if timeout > 0.0 {
        if let Err(e) = spawn_holder(port, timeout) {
            eprintln!("portpicker: WARNING: cannot hold port {port} after exit: {e}");
        }
    }
    println!("{port}");
    ExitCode::SUCCESS
}

/// A local port, claimed for `pid`'s life where claims exist.
#[cfg(target_os = "linux")]
fn pick_local(pid: u32) -> Result<u16, portpick::NoFreePortError> {
    if !portpick::__private::claims_on() {
        return portpick::__private::global().pick_local();
    }
    helper::pick_for(pid)
}

#[cfg(not(target_os = "linux"))]
fn pick_local(_pid: u32) -> Result<u16, portpick::NoFreePortError> {
    portpick::__private::global().pick_local()
}

/// Starts detached copies of ourselves that keep `port` bound for
/// `seconds`. The bound sockets are passed as the helpers' standard
/// streams, so there is no moment where the port is unbound; and a helper
/// has none of our streams, so `$(portpicker $$ 1.5)` returns as soon as we
/// exit.
fn spawn_holder(port: u16, seconds: f64) -> std::io::Result<()> {
    use std::os::fd::OwnedFd;
    let tcp = portpick::__private::hold_tcp(port);
    let udp = portpick::__private::hold_udp(port);
    let (Some((_, tcp)), Some((_, udp))) = (tcp, udp) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "the port was taken before it could be held",
        ));
    };
    let held: Vec<OwnedFd> = tcp
        .into_sockets()
        .map(OwnedFd::from)
        .chain(udp.into_sockets().map(OwnedFd::from))
        .collect();
    spawn_helpers(held, seconds)
}

/// Hands `held` to helpers, three each as their stdin, stdout and stderr
/// (std passes a child no other descriptors without unsafe code). A
/// dual-stack host needs one helper (TCP, UDP); with IPv6-only sockets
/// (`net.ipv6.bindv6only = 1`) each protocol takes two sockets, and a
/// second helper keeps the rest.
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
            .current_dir("/")
            .spawn()?;
    }
    Ok(())
}

/// The helper: its standard streams are the bound sockets. It only waits;
/// exiting releases them.
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
        .unwrap_or_else(|| portpick::__private::server::DEFAULT_ADDRESS.to_string());
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
