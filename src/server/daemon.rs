//! The daemon's `main`: the command line in, an exit status out. Shared by
//! the `portserver` binary and `cargo run --example portserver`.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use crate::server::config::{parse_args, Command, USAGE};
use crate::server::lifecycle::PortServer;
use crate::server::log::{Level, Logger};

/// Runs the portserver daemon with `args` (the command line without the
/// program name), as `portserver --help` describes, until it is killed.
/// Returns 0 after `--help` or `--version` (1 when they cannot be
/// written), 2 for a usage error, 1 when the server cannot start (a pool
/// with no valid port, an address or state file in use, a state file that
/// cannot be written). Output that cannot be written never changes these,
/// and never panics.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     portpick::server::run_daemon(std::env::args_os().skip(1))
/// }
/// ```
pub fn run_daemon(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let mut utf8 = Vec::new();
    for arg in args {
        match arg.into_string() {
            Ok(arg) => utf8.push(arg),
            Err(arg) => {
                return usage_error(format_args!("argument {arg:?} is not valid UTF-8"));
            }
        }
    }
    let (config, skipped) = match parse_args(utf8) {
        Ok(Command::Help) => {
            let mut out = std::io::stdout().lock();
            return match out.write_all(USAGE.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            };
        }
        Ok(Command::Version) => return version(),
        Ok(Command::Run { config, skipped }) => (config, skipped),
        Err(e) if e.exit_code() == 2 => return usage_error(format_args!("{e}")),
        Err(e) => {
            say(format_args!("portserver: error: {e}"));
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let logger = Logger::new(config.log_level);
    for piece in &skipped {
        logger.write(Level::Warning, format_args!("ignoring {piece}"));
    }
    match PortServer::new(config).start() {
        Ok(server) => {
            server.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            logger.write(Level::Error, format_args!("{e}"));
            ExitCode::from(1)
        }
    }
}

/// A short usage error that points at `--help` (the usage is 30 lines that
/// would bury the one that matters), exit 2.
fn usage_error(what: fmt::Arguments<'_>) -> ExitCode {
    say(format_args!(
        "portserver: error: {what}\nTry 'portserver --help' for the flags."
    ));
    ExitCode::from(2)
}

/// One message on stderr; an unwritable stderr leaves only the exit status.
fn say(what: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{what}");
}

/// `portserver --version`; stdout may be closed or full: exit 1 then.
fn version() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written =
        writeln!(out, "portserver {}", env!("CARGO_PKG_VERSION")).and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "portserver: error: cannot write: {e}");
            ExitCode::from(1)
        }
    }
}
