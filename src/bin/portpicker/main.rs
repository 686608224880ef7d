//! `portpicker [PID] [BIND_TIMEOUT]`: prints one unused port, as Python's
//! `python -m portpicker`. See `--help`.

use std::io::Write;
use std::process::{Child, ExitCode};

use portpick::__private::warn;
use portpick::{DEFAULT_TIMEOUT, PORTSERVER_ADDRESS_ENV};

mod args;
mod call;
mod commands;
mod holder;
mod holding;
mod owner;

use call::Call;

const USAGE: &str = "\
usage: portpicker [PID] [BIND_TIMEOUT]
       portpicker --stats [ADDRESS]

Prints one port that is free on TCP and UDP, and a newline.

  PID           the process the port is for (default: our parent, as
                Python's portpicker). A portserver holds the port until PID
                exits. Without one, the port is claimed for as long as PID
                lives (Linux), by a small holder process of this call:
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

exit status: 0 with a port, 1 without one (the reason on stderr) or when
it cannot be printed, 2 for bad arguments

time: a call returns within 5 s of asking a portserver (when one is set)
plus 5 s of waiting for its holder, plus one local pick; it takes a few
milliseconds when all is well

example:
  port=\"$(portpicker $$)\"
";

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
        Some("-h" | "--help") => print(USAGE.as_bytes()),
        Some("--stats") => stats(&args[1..]),
        _ => commands::dispatch(&args).unwrap_or_else(|| match Call::parse(&args) {
            Ok(call) => pick(&call),
            Err(msg) => usage_error(&msg),
        }),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    warn(format_args!("portpicker: {msg}\n\n{USAGE}"));
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
    let picker = portpick::__private::global();
    // The portserver first, as Python's tool; its ports are its own.
    if let Ok(address) = std::env::var(PORTSERVER_ADDRESS_ENV) {
        if !address.is_empty() {
            match picker.get_port_from_port_server(&address, Some(call.pid)) {
                Ok(port) => return print(ports_text(&[port]).as_bytes()),
                Err(e) => warn(format_args!("portpicker: {e}; picking a port locally")),
            }
        }
    }
    let owner = if portpick::__private::claims_on() {
        owner::resolve(call.pid)
    } else {
        None
    };
    if owner.is_some() || call.bind_timeout > 0.0 {
        match holder::start(call, owner) {
            Ok((child, answer)) => return deliver(child, answer),
            Err(e) => warn(format_args!(
                "portpicker: warning: cannot start a holder for pid {} ({e}): the port is \
                 picked here, its claim ends with this call{}",
                call.pid,
                if call.bind_timeout > 0.0 {
                    " and it is not kept bound"
                } else {
                    ""
                }
            )),
        }
    }
    match call.want.pick(picker) {
        Ok(ports) => print(ports_text(&ports).as_bytes()),
        Err(e) => {
            warn(format_args!("portpicker: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Shows the holder's answer; a holder whose ports cannot be printed is
/// killed, so that its claims and binds end with us.
fn deliver(child: Child, answer: holder::Answer) -> ExitCode {
    for warning in &answer.warnings {
        warn(format_args!("{warning}"));
    }
    if let Some(e) = answer.error {
        warn(format_args!("portpicker: {e}"));
        holder::kill(child);
        return ExitCode::from(1);
    }
    if printed(ports_text(&answer.ports).as_bytes()) {
        ExitCode::SUCCESS
    } else {
        holder::kill(child);
        ExitCode::from(1)
    }
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
