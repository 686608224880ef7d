//! The portserver daemon: `cargo run --example portserver -- --help`.
//!
//! It serves until killed (SIGINT or SIGTERM end it; with
//! `--portserver_state_file` no reservation is lost). The same program is
//! installed as the `portserver` binary.

fn main() -> std::process::ExitCode {
    portpick::server::run_daemon(std::env::args_os().skip(1))
}
