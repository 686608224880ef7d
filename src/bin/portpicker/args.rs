//! The tool's command lines, parsed without touching the system: the pick
//! (`[PID] [BIND_TIMEOUT]` with `--count`, `--consecutive`, `--range`,
//! `--exclude`, `--address`) and `--wait PORT [--timeout S] [--address A]`.
//! Both `--flag value` and `--flag=value`; a `=value` on a flag that takes
//! none is an error.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use portpick::__private::args::{Arg, LexError, Lexer};

/// The longest BIND_TIMEOUT and `--timeout`: a day. Longer is a mistake
/// (a typo'd number), not a plan.
pub const MAX_SECONDS: f64 = 86_400.0;

/// How long `--wait` waits without `--timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The options of a pick and the other commands, for `--help`.
pub const USAGE_OPTIONS: &str = "
options:
  --count N        N distinct ports, one per line; each from the portserver
                   first when PORTSERVER_ADDRESS is set, the rest (all of
                   them when it has none) picked locally
  --consecutive N  a block of N consecutive ports, one per line, in --range
                   or else the kernel's ephemeral range
  --range LO-HI    only ports from LO to HI
  --exclude P[,P]  never these ports (may be repeated)
  --address ADDR   free on this IP address, TCP and UDP, instead of on
                   every address (the wildcard of each family)
                   --consecutive, --range, --exclude and --address always
                   pick locally: a portserver cannot honour them
  --wait PORT      exit 0 once something listens on TCP PORT (at ADDR,
                   default 127.0.0.1 or ::1), 1 after --timeout SECS
                   (default 30)
  --stats          print the statistics of the portserver at ADDRESS
                   (default: $PORTSERVER_ADDRESS, else @unittest-portserver)
  --version        print the version
  -h, --help       print this help
";

/// How many ports a pick prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// One (no `--count` or `--consecutive`).
    One,
    /// `--count N`: N distinct ports.
    Many(usize),
    /// `--consecutive N`: a block.
    Block(usize),
}

/// A pick's command line.
#[derive(Debug, Clone, PartialEq)]
pub struct PickArgs {
    /// PID (default: our parent).
    pub pid: Option<u32>,
    /// BIND_TIMEOUT, seconds (0: none).
    pub bind_timeout: f64,
    /// How many ports.
    pub ports: Ports,
    /// `--range`.
    pub range: Option<RangeInclusive<u16>>,
    /// `--exclude`, every occurrence.
    pub exclude: Vec<u16>,
    /// `--address`.
    pub address: Option<IpAddr>,
}

/// `--wait`'s command line.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitArgs {
    /// The TCP port to wait for.
    pub port: u16,
    /// How long.
    pub timeout: Duration,
    /// Where (default: loopback, 127.0.0.1 or ::1).
    pub address: Option<IpAddr>,
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// An argument we do not know.
    Unknown { arg: String },
    /// A flag that needs a value had none.
    MissingValue { flag: String },
    /// A flag that takes no value had one (`--version=x`).
    UnwantedValue { flag: String, value: String },
    /// A value that does not read as what the flag wants.
    BadValue {
        flag: String,
        value: String,
        expected: &'static str,
    },
    /// Two flags that cannot go together.
    Conflict { flag: String, other: String },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unknown { arg } => write!(f, "unexpected argument {arg:?}"),
            ArgsError::MissingValue { flag } => write!(f, "argument {flag} expects a value"),
            ArgsError::UnwantedValue { flag, value } => {
                write!(f, "argument {flag} takes no value, got {value:?}")
            }
            ArgsError::BadValue {
                flag,
                value,
                expected,
            } => write!(f, "invalid {flag} {value:?}: {expected}"),
            ArgsError::Conflict { flag, other } => {
                write!(f, "argument {flag} cannot be used with {other}")
            }
        }
    }
}

impl std::error::Error for ArgsError {}

impl From<LexError> for ArgsError {
    fn from(e: LexError) -> Self {
        match e {
            LexError::MissingValue { flag } => ArgsError::MissingValue { flag },
            LexError::UnwantedValue { flag, value } => ArgsError::UnwantedValue { flag, value },
        }
    }
}

/// The lexer over a command line given as a slice.
fn lexer(args: &[String]) -> Lexer<std::iter::Cloned<std::slice::Iter<'_, String>>> {
    Lexer::new(args.iter().cloned())
}

fn bad(flag: &str, value: &str, expected: &'static str) -> ArgsError {
    ArgsError::BadValue {
        flag: flag.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// A port, 1 to 65535.
fn port(flag: &str, text: &str) -> Result<u16, ArgsError> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(bad(flag, text, "a port is 1 to 65535")),
    }
}

/// Seconds from 0 to a day, may be fractional.
fn seconds(flag: &str, text: &str) -> Result<f64, ArgsError> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=MAX_SECONDS).contains(&s) => Ok(s),
        _ => Err(bad(flag, text, "seconds from 0 to 86400")),
    }
}

/// A count of ports, 1 to 65535.
fn count(flag: &str, text: &str) -> Result<usize, ArgsError> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n),
        _ => Err(bad(flag, text, "a number of ports from 1 to 65535")),
    }
}

/// `LO-HI`, inclusive, LO at most HI.
fn range(flag: &str, text: &str) -> Result<RangeInclusive<u16>, ArgsError> {
    let (lo, hi) = text
        .split_once('-')
        .ok_or_else(|| bad(flag, text, "LO-HI, ports 1 to 65535"))?;
    let (lo, hi) = (port(flag, lo)?, port(flag, hi)?);
    if lo > hi {
        return Err(bad(flag, text, "LO must not be above HI"));
    }
    Ok(lo..=hi)
}

/// `P[,P...]`.
fn ports(flag: &str, text: &str) -> Result<Vec<u16>, ArgsError> {
    text.split(',').map(|p| port(flag, p)).collect()
}

fn address(flag: &str, text: &str) -> Result<IpAddr, ArgsError> {
    text.trim()
        .parse()
        .map_err(|_| bad(flag, text, "an IPv4 or IPv6 address"))
}

/// Parses a pick: `[PID] [BIND_TIMEOUT]` and its options, in any order.
///
/// # Errors
///
/// [`ArgsError`] for an unknown argument, a missing or bad value, or
/// `--count` with `--consecutive`.
pub fn parse_pick(args: &[String]) -> Result<PickArgs, ArgsError> {
    let mut pick = PickArgs {
        pid: None,
        bind_timeout: 0.0,
        ports: Ports::One,
        range: None,
        exclude: Vec::new(),
        address: None,
    };
    let mut words = 0;
    let mut shape: Option<String> = None;
    let mut lexer = lexer(args);
    while let Some(arg) = lexer.next()? {
        let flag = match arg {
            Arg::Word(word) => {
                match words {
                    0 => pick.pid = Some(word.parse().map_err(|_| bad("PID", &word, "a pid"))?),
                    1 => pick.bind_timeout = seconds("BIND_TIMEOUT", &word)?,
                    _ => return Err(ArgsError::Unknown { arg: word }),
                }
                words += 1;
                continue;
            }
            Arg::Flag(flag) => flag,
        };
        const FLAGS: [&str; 5] = [
            "--count",
            "--consecutive",
            "--range",
            "--exclude",
            "--address",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(no_value(flag, lexer.optional_value()));
        }
        let value = lexer.value()?;
        match flag.as_str() {
            "--count" | "--consecutive" => {
                if let Some(other) = shape.replace(flag.clone()).filter(|o| *o != flag) {
                    return Err(ArgsError::Conflict { flag, other });
                }
                let n = count(&flag, &value)?;
                pick.ports = match flag.as_str() {
                    "--count" => Ports::Many(n),
                    _ => Ports::Block(n),
                };
            }
            "--range" => pick.range = Some(range(&flag, &value)?),
            "--exclude" => pick.exclude.extend(ports(&flag, &value)?),
            "--address" => pick.address = Some(address(&flag, &value)?),
            _ => return Err(ArgsError::Unknown { arg: flag }),
        }
    }
    Ok(pick)
}

/// The error for a flag a pick does not take: a flag that takes no value
/// given one (`--help=x`) says so.
fn no_value(flag: String, inline: Option<String>) -> ArgsError {
    match inline {
        Some(value) if NO_VALUE.contains(&flag.as_str()) => {
            ArgsError::UnwantedValue { flag, value }
        }
        _ => ArgsError::Unknown { arg: flag },
    }
}

/// The flags that take no value.
const NO_VALUE: [&str; 3] = ["--help", "--version", "--stats"];

/// Parses `--stats [ADDRESS]` (`args[0]` is `--stats`): the address, if
/// one is given.
///
/// # Errors
///
/// [`ArgsError::Unknown`] for a flag or a second word.
pub fn parse_stats(args: &[String]) -> Result<Option<String>, ArgsError> {
    match args.get(1..).unwrap_or_default() {
        [] => Ok(None),
        [address] if !address.starts_with("--") => Ok(Some(address.clone())),
        [arg] | [_, arg, ..] => Err(ArgsError::Unknown { arg: arg.clone() }),
    }
}

/// Parses `--wait PORT [--timeout SECS] [--address ADDR]`, in any order.
///
/// # Errors
///
/// [`ArgsError`] for an unknown argument, a missing or bad value.
pub fn parse_wait(args: &[String]) -> Result<WaitArgs, ArgsError> {
    let (mut port_, mut timeout, mut address_) = (None, DEFAULT_WAIT, None);
    let mut lexer = lexer(args);
    while let Some(arg) = lexer.next()? {
        let flag = match arg {
            Arg::Word(arg) => return Err(ArgsError::Unknown { arg }),
            Arg::Flag(flag) => flag,
        };
        if !["--wait", "--timeout", "--address"].contains(&flag.as_str()) {
            return Err(no_value(flag, lexer.optional_value()));
        }
        let value = lexer.value()?;
        match flag.as_str() {
            "--wait" => port_ = Some(port(&flag, &value)?),
            "--timeout" => timeout = Duration::from_secs_f64(seconds(&flag, &value)?),
            "--address" => address_ = Some(address(&flag, &value)?),
            _ => return Err(ArgsError::Unknown { arg: flag }),
        }
    }
    let port = port_.ok_or_else(|| ArgsError::MissingValue {
        flag: "--wait".to_string(),
    })?;
    Ok(WaitArgs {
        port,
        timeout,
        address: address_,
    })
}

/// Whether the command line asks for `--wait` (wherever it is).
pub fn wants_wait(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "--wait" || a.starts_with("--wait="))
}

/// Whether the command line is `--version` (or `-V`), alone.
///
/// # Errors
///
/// [`ArgsError::UnwantedValue`] for `--version=x`.
pub fn wants_version(args: &[String]) -> Result<bool, ArgsError> {
    let mut lexer = lexer(args);
    match lexer.next()? {
        Some(Arg::Flag(flag)) if flag == "-V" || flag == "--version" => {
            lexer.no_value()?;
            match args.get(1) {
                None => Ok(true),
                Some(arg) => Err(ArgsError::Unknown { arg: arg.clone() }),
            }
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests;
