//! The portserver daemon, as `cargo install` installs it;
//! `cargo run --example portserver` runs the same program.
//!
//! It serves until killed (SIGINT or SIGTERM end it; with
//! `--portserver_state_file` no reservation is lost).

fn main() -> std::process::ExitCode {
    portpick::server::run_daemon(std::env::args_os().skip(1))
}
