//! `portpicker [PID] [BIND_TIMEOUT] [OPTIONS]`: prints one unused port, as
//! Python's `python -m portpicker`, or several with `--count` or
//! `--consecutive`. See `--help`.

use std::io::Write;
use std::process::ExitCode;

use portpick::__private::warn;
use portpick::{DEFAULT_TIMEOUT, PORTSERVER_ADDRESS_ENV};

mod args;
mod call;
mod commands;
mod holder;
mod holding;
mod owner;

use call::Call;

const SYNOPSIS: &str = "\
usage: portpicker [PID] [BIND_TIMEOUT] [--count N | --consecutive N]
                  [--range LO-HI] [--exclude P[,P...]] [--address ADDR]
       portpicker --wait PORT [--timeout SECS] [--address ADDR]
       portpicker --stats [ADDRESS]
       portpicker --version
";

const USAGE_HEAD: &str = "
Prints one port that is free on TCP and UDP, and a newline (with --count
or --consecutive, N ports, one per line).

  PID              the process the ports are for (default: our parent, as
                   Python's portpicker). A portserver holds its ports until
                   PID exits. Without one, the ports are claimed for as long
                   as PID lives (Linux), by a small holder process of this
                   call: other portpick users skip them, while PID can bind
                   them at once
  BIND_TIMEOUT     seconds (may be fractional, at most 86400: a day): keep
                   every port no portserver gave bound on TCP and UDP for
                   this long after we exit, as Python's portpicker does
                   (nothing can bind them meanwhile, not even PID)
";

const USAGE_TAIL: &str = "
environment:
  PORTSERVER_ADDRESS  ask this portserver first (@name or a socket path)
  PORTPICK_CLAIMS     'off': no cross-process claims, as Python's portpicker

exit status: 0 with the ports, 1 without them (the reason on stderr) or
when they cannot be printed, 2 for bad arguments

time: a call returns within 5 s per port asked of a portserver (when one
is set) plus 5 s of waiting for its holder, plus one local pick; it takes
a few milliseconds when all is well

examples:
  port=\"$(portpicker $$)\"
  portpicker $$ --count 3 --range 20000-20999 --address 127.0.0.1
";

/// The whole `--help` text.
fn usage() -> String {
    format!("{SYNOPSIS}{USAGE_HEAD}{}{USAGE_TAIL}", args::USAGE_OPTIONS)
}

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => return usage_error(&format!("argument {arg:?} is not valid UTF-8")),
        }
    }
    match args.first().map(String::as_str) {
        Some(holder::HOLDER_ARG) => holding::run(&args[1..]),
        Some("-h" | "--help") => print(usage().as_bytes()),
        Some("--stats") => stats(&args),
        _ => commands::dispatch(&args).unwrap_or_else(|| match Call::parse(&args) {
            Ok(call) => pick(&call),
            Err(e) => usage_error(&e.to_string()),
        }),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    warn(format_args!(
        "portpicker: {msg}\n\n{SYNOPSIS}(portpicker --help says more)"
    ));
    ExitCode::from(2)
}

/// Writes `text` to stdout: exit 0, or 1 when it cannot be written (a full
/// disk, a reader that has gone).
fn print(text: &[u8]) -> ExitCode {
    if printed(text) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn printed(text: &[u8]) -> bool {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text).and_then(|()| stdout.flush()) {
        Ok(()) => true,
        Err(e) => {
            warn(format_args!("portpicker: cannot write to stdout: {e}"));
            false
        }
    }
}

fn ports_text(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("{p}\n")).collect()
}

fn pick(call: &Call) -> ExitCode {
    let served = from_portserver(call);
    let Some(rest) = call.rest(&served) else {
        return print(ports_text(&served).as_bytes());
    };
    let left = rest.want.count();
    let owner = if portpick::__private::claims_on() {
        owner::resolve(call.pid)
    } else {
        None
    };
    if owner.is_some() || call.bind_timeout > 0.0 {
        match holder::start(&rest, owner) {
            Ok((holder, answer)) => return deliver(holder, answer, &served),
            Err(e) => no_holder(call, left, &e),
        }
    }
    // Kept until the ports are printed: its claims end with it.
    let picker = rest.want.picker();
    match rest.want.pick(&picker) {
        Ok(ports) => print(ports_text(&[served, ports].concat()).as_bytes()),
        Err(e) => {
            warn(format_args!("portpicker: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Warns that the `count` ports are picked without a holder.
fn no_holder(call: &Call, count: usize, e: &std::io::Error) {
    let (ports, claims, bound) = match count {
        1 => ("the port is", "its claim ends", "it is"),
        _ => ("the ports are", "their claims end", "they are"),
    };
    let unbound = if call.bind_timeout > 0.0 {
        format!(" and {bound} not kept bound")
    } else {
        String::new()
    };
    warn(format_args!(
        "portpicker: warning: cannot start a holder for pid {} ({e}): {ports} picked \
         here, {claims} with this call{unbound}",
        call.pid
    ));
}

/// The ports the portserver gives PID, as Python's tool asks it first:
/// one request per port, all of them or, when it fails, those it gave
/// (the rest are picked locally). None when no portserver is set or the
/// call wants what a portserver cannot honour.
fn from_portserver(call: &Call) -> Vec<u16> {
    let mut served = Vec::new();
    let address = std::env::var(PORTSERVER_ADDRESS_ENV).unwrap_or_default();
    if address.is_empty() || !call.want.portserver_may_serve() {
        return served;
    }
    let picker = portpick::__private::global();
    while served.len() < call.want.count() {
        match picker.get_port_from_port_server(&address, Some(call.pid)) {
            Ok(port) => served.push(port),
            Err(e) => {
                let left = call.want.count() - served.len();
                let what = match left {
                    1 => "a port".to_string(),
                    n => format!("{n} ports"),
                };
                warn(format_args!("portpicker: {e}; picking {what} locally"));
                break;
            }
        }
    }
    served
}

/// Shows the holder's answer after the portserver's ports, and tells the
/// holder they were printed; a holder whose ports cannot be printed is
/// killed, so that its claims and binds end with us.
fn deliver(holder: holder::Holder, answer: holder::Answer, served: &[u16]) -> ExitCode {
    for warning in &answer.warnings {
        warn(format_args!("{warning}"));
    }
    if let Some(e) = answer.error {
        warn(format_args!("portpicker: {e}"));
        holder.kill();
        return ExitCode::from(1);
    }
    if !printed(ports_text(&[served, &answer.ports[..]].concat()).as_bytes()) {
        holder.kill();
        return ExitCode::from(1);
    }
    if let Err(e) = holder.printed() {
        let ports = match answer.ports.len() {
            1 => "its port's claim has",
            _ => "its ports' claims have",
        };
        warn(format_args!(
            "portpicker: warning: the holder gave up before the ports were printed \
             ({e}): {ports} ended"
        ));
    }
    ExitCode::SUCCESS
}

fn stats(args: &[String]) -> ExitCode {
    let address = match args::parse_stats(args) {
        Ok(address) => address,
        Err(e) => return usage_error(&e.to_string()),
    };
    let address = address
        .or_else(|| {
            std::env::var(PORTSERVER_ADDRESS_ENV)
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| portpick::__private::server::DEFAULT_ADDRESS.to_string());
    match portpick::get_port_server_stats(&address, DEFAULT_TIMEOUT) {
        Ok(stats) => {
            let text: String = stats
                .iter()
                .map(|(name, value)| format!("{name} {value}\n"))
                .collect();
            print(text.as_bytes())
        }
        Err(e) => {
            warn(format_args!("portpicker: {e}"));
            ExitCode::from(1)
        }
    }
}
