//! The tool's commands that pick nothing: `--version`, and `--wait PORT`
//! (exit 0 once something listens on the port, 1 on timeout).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use crate::args::{self, ArgsError};

/// Runs `--version` or `--wait` when the command line asks for one;
/// `None`: it asks for something else.
pub fn dispatch(args: &[String]) -> Option<ExitCode> {
    match args::wants_version(args) {
        Ok(true) => return Some(version()),
        Ok(false) => {}
        Err(e) => return Some(usage_error(&e)),
    }
    args::wants_wait(args).then(|| wait(args))
}

/// Writes `text` to stdout, which may be closed or full: exit 1 then.
fn write_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "portpicker: cannot write: {e}");
            ExitCode::from(1)
        }
    }
}

fn version() -> ExitCode {
    write_out(&format!("portpicker {}\n", env!("CARGO_PKG_VERSION")))
}

fn usage_error(e: &ArgsError) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "portpicker: {e}\n\nusage: portpicker --wait PORT [--timeout SECS] [--address ADDR]\n       \
         portpicker --version"
    );
    ExitCode::from(2)
}

fn wait(args: &[String]) -> ExitCode {
    let wait = match args::parse_wait(args) {
        Ok(wait) => wait,
        Err(e) => return usage_error(&e),
    };
    // Loopback by default: a server under test listens on either family.
    let ips = match wait.address {
        Some(ip) => vec![ip],
        None => vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    };
    let addrs: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, wait.port))
        .collect();
    match portpick::__private::wait_for_any(&addrs, wait.timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "portpicker: {e}");
            ExitCode::from(1)
        }
    }
}
