//! The portserver daemon: `cargo run --example portserver -- --help`.
//!
//! Argument parsing and one library call; it serves until killed (SIGINT or
//! SIGTERM end it; with `--portserver_state_file` no reservation is lost).

use std::process::ExitCode;

use portpick::server::{parse_args, Command, Level, Logger, PortServer, USAGE};

fn main() -> ExitCode {
    let (config, skipped) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run { config, skipped }) => (config, skipped),
        Err(e) => {
            eprintln!("portserver: error: {e}");
            if e.exit_code() == 2 {
                eprint!("{USAGE}");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let logger = Logger::new(config.log_level);
    for piece in &skipped {
        logger.write(Level::Error, format_args!("{piece}"));
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
