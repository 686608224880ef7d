//! The portserver's settings and its command line (Python's flags plus
//! ours), parsed without touching the system.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::address::PortServerAddress;
use crate::args::{Arg, LexError, Lexer};
use crate::server::log::{Level, LogOutput};
use crate::server::ranges::{parse_pool, RangeError};

/// Python's default pool.
pub const DEFAULT_POOL: &str = "15000-24999";
/// Python's default address.
pub const DEFAULT_ADDRESS: &str = "@unittest-portserver";
/// Default per-pid quota. A test process that asks for more than 1,000 ports
/// at once is far beyond normal use; one that loops forever is stopped at a
/// tenth of the default pool.
pub const DEFAULT_MAX_PORTS_PER_PID: usize = 1000;

/// How a portserver runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen. Default `@unittest-portserver`.
    pub address: PortServerAddress,
    /// The ports to hand out. Default 15000 to 24999.
    pub ports: Vec<u16>,
    /// Journal of reservations, so they survive restarts. Default none.
    pub state_file: Option<PathBuf>,
    /// Ports one process may hold at once; 0 is no limit. Default 1,000.
    pub max_ports_per_pid: usize,
    /// How much to log. Default [`Level::Warning`]: a server built in code
    /// is quiet unless something is wrong. The daemon's flags
    /// ([`parse_args`]) give [`Level::Info`], as Python's.
    pub log_level: Level,
    /// Where log lines go (`None`: stderr); set with
    /// [`ServerConfig::log_to`].
    pub(crate) log_output: Option<LogOutput>,
    /// Log a one-line summary of the statistics this often (at
    /// `--verbose`). Default 60 s.
    pub stats_interval: Option<Duration>,
    /// Sweep all owners for dead ones this often. Default 1 s.
    pub reclaim_interval: Duration,
    /// How long a client may take to send its request. Default 2 s.
    pub request_timeout: Duration,
    /// Threads accepting connections. Default 2.
    pub acceptors: usize,
    /// Connections waiting for a slow client's request at once; past it the
    /// oldest is dropped. Default 512; lowered at start so that they leave
    /// a reserve of descriptors under the open-files limit (`ulimit -n`).
    pub max_pending: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: PortServerAddress::Abstract(DEFAULT_ADDRESS.as_bytes()[1..].to_vec()),
            ports: (15000..=24999).collect(),
            state_file: None,
            max_ports_per_pid: DEFAULT_MAX_PORTS_PER_PID,
            log_level: Level::Warning,
            log_output: None,
            stats_interval: Some(Duration::from_secs(60)),
            reclaim_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            acceptors: 2,
            max_pending: 512,
        }
    }
}

impl ServerConfig {
    /// The defaults, listening on `address`.
    pub fn new(address: PortServerAddress) -> Self {
        ServerConfig {
            address,
            ..ServerConfig::default()
        }
    }

    /// Sets the ports to hand out.
    pub fn ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.ports = ports.into_iter().collect();
        self
    }

    /// Sets the state file (default: none).
    pub fn state_file(mut self, path: Option<PathBuf>) -> Self {
        self.state_file = path;
        self
    }

    /// Sets the per-pid quota (default 1,000; 0: none).
    pub fn max_ports_per_pid(mut self, n: usize) -> Self {
        self.max_ports_per_pid = n;
        self
    }

    /// Sets the log level (default [`Level::Warning`]; [`Level::Off`]:
    /// nothing).
    pub fn log_level(mut self, level: Level) -> Self {
        self.log_level = level;
        self
    }

    /// Sends the log to `writer` instead of stderr (default: stderr), one
    /// `write_all` per line, from a thread of the server's own: a writer
    /// that blocks delays no client (lines are dropped and counted).
    pub fn log_to(mut self, writer: impl std::io::Write + Send + 'static) -> Self {
        self.log_output = Some(LogOutput::new(writer));
        self
    }

    /// Sets how long a client may take to send its request (default 2 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the background sweep interval (default 1 s).
    pub fn reclaim_interval(mut self, interval: Duration) -> Self {
        self.reclaim_interval = interval;
        self
    }
}

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run with this configuration; `skipped` lists pool pieces ignored.
    Run {
        /// The configuration.
        config: ServerConfig,
        /// Pieces of `--portserver_static_pool` that were skipped.
        skipped: Vec<RangeError>,
    },
    /// Print usage and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// A flag we do not know.
    UnknownFlag {
        /// The flag as given.
        flag: String,
    },
    /// A flag that needs a value had none.
    MissingValue {
        /// The flag.
        flag: String,
    },
    /// A flag's value is wrong.
    BadValue {
        /// The flag.
        flag: String,
        /// The value given.
        value: String,
    },
    /// `--portserver_static_pool` names no valid port.
    EmptyPool {
        /// The value given.
        value: String,
        /// Each piece, with why it names no port.
        problems: Vec<RangeError>,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::UnknownFlag { flag } => write!(f, "unrecognized argument {flag:?}"),
            ArgsError::MissingValue { flag } => write!(f, "argument {flag} expects a value"),
            ArgsError::BadValue { flag, value } => {
                write!(f, "invalid value {value:?} for argument {flag}")
            }
            ArgsError::EmptyPool { value, problems } => {
                write!(f, "no ports to serve in --portserver_static_pool {value:?}")?;
                for (i, problem) in problems.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    problem.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ArgsError {}

impl From<LexError> for ArgsError {
    fn from(e: LexError) -> Self {
        match e {
            LexError::MissingValue { flag } => ArgsError::MissingValue { flag },
            // As a flag's bad value (`--verbose=1` was one already).
            LexError::UnwantedValue { flag, value } => ArgsError::BadValue { flag, value },
        }
    }
}

impl ArgsError {
    /// The exit status a command line tool should use: 1 for a pool with
    /// no valid port (as Python), 2 for a usage error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ArgsError::EmptyPool { .. } => 1,
            _ => 2,
        }
    }
}

/// The usage text.
pub const USAGE: &str = "\
usage: portserver [-h] [--portserver_static_pool N-P[,X-Y...]]
                  [--portserver_address ADDR] [--verbose] [--debug]
                  [--portserver_state_file PATH]
                  [--portserver_max_ports_per_pid N]

Hands out network ports to the processes of this host, over a unix socket.

options:
  -h, --help            show this help message and exit
  -V, --version         show the version and exit
  --portserver_static_pool N-P[,X-Y...]
                        comma separated N-P range(s) of ports to manage
                        (inclusive; default 15000-24999)
  --portserver_address ADDR, --portserver_unix_socket_address ADDR
                        address of the AF_UNIX socket to listen on; a first @
                        is the abstract namespace (default @unittest-portserver)
  --verbose             log every allocation and denial, and a one-line
                        summary every minute (`portpicker --stats ADDR`
                        gives every statistic)
  --debug               log everything
  --portserver_state_file PATH
                        journal reservations to PATH so they survive restarts
  --portserver_max_ports_per_pid N
                        ports one process may hold at once (default 1000;
                        0: no limit)

signals:
  SIGINT and SIGTERM end the server. SIGUSR1 (on which Python's portserver
  logs its statistics) ends it too: safe Rust cannot catch a signal. Ask
  `portpicker --stats ADDR` for the statistics instead. With
  --portserver_state_file no reservation is lost however the server ends.

exit status:
  0 after --help, 2 for a usage error, 1 when the server cannot start (no
  valid port, the address or the state file in use by another server, a
  state file that cannot be written) or --help cannot be printed.
";

/// Parses the portserver's flags (without the program name). Both
/// `--flag=value` and `--flag value` work; `=value` on a flag that takes
/// none (`--help=x`) is an error.
///
/// # Errors
///
/// [`ArgsError`] for an unknown flag, a missing or bad value, or a pool
/// with no valid port.
pub fn parse_args<I, S>(args: I) -> Result<Command, ArgsError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut config = ServerConfig::default();
    let mut pool = DEFAULT_POOL.to_string();
    let mut verbose = false;
    let mut debug = false;
    let mut lexer = Lexer::new(args.into_iter().map(Into::into));
    while let Some(arg) = lexer.next()? {
        let flag = match arg {
            Arg::Flag(flag) => flag,
            Arg::Word(word) => return Err(ArgsError::UnknownFlag { flag: word }),
        };
        match flag.as_str() {
            "-h" | "--help" => {
                lexer.no_value()?;
                return Ok(Command::Help);
            }
            "-V" | "--version" => {
                lexer.no_value()?;
                return Ok(Command::Version);
            }
            "--verbose" => verbose = true,
            "--debug" => debug = true,
            "--portserver_static_pool" => pool = lexer.value()?,
            "--portserver_address" | "--portserver_unix_socket_address" => {
                let v = lexer.value()?;
                // Not trimmed: a path or name may end in a space.
                config.address = v
                    .parse()
                    .map_err(|_| ArgsError::BadValue { flag, value: v })?;
            }
            "--portserver_state_file" => {
                let v = lexer.value()?;
                if v.is_empty() {
                    return Err(ArgsError::BadValue { flag, value: v });
                }
                config.state_file = Some(PathBuf::from(v));
            }
            "--portserver_max_ports_per_pid" => {
                config.max_ports_per_pid = parsed(&flag, lexer.value()?)?;
            }
            _ => {
                // As written, `=value` and all.
                let flag = match lexer.optional_value() {
                    Some(value) => format!("{flag}={value}"),
                    None => flag,
                };
                return Err(ArgsError::UnknownFlag { flag });
            }
        }
    }
    config.log_level = if debug {
        Level::Debug
    } else if verbose {
        Level::Verbose
    } else {
        Level::Info
    };
    let ranges = parse_pool(&pool);
    if ranges.ports.is_empty() {
        let mut problems = ranges.skipped;
        problems.extend(ranges.backwards);
        return Err(ArgsError::EmptyPool {
            value: pool,
            problems,
        });
    }
    config.ports = ranges.ports;
    Ok(Command::Run {
        config,
        skipped: ranges.skipped,
    })
}

/// `value` (white space around it ignored) as `flag` wants it.
fn parsed<T: std::str::FromStr>(flag: &str, value: String) -> Result<T, ArgsError> {
    value.trim().parse().map_err(|_| ArgsError::BadValue {
        flag: flag.to_string(),
        value,
    })
}
