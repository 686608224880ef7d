//! The example portserver as users run it: flags, exit codes, logs, and the
//! `portpicker` tool talking to it.
#![cfg(target_os = "linux")]

mod support;

use std::fs::File;
use std::process::Command;

use support::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_bad_flags() {
    let out = run_portserver(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--portserver_static_pool"));

    // A usage error is named in a line and points at --help; the 30 lines
    // of usage would bury it.
    for (args, named) in [
        (
            &["--no-such-flag"][..],
            "unrecognized argument \"--no-such-flag\"",
        ),
        (&["--verbose", "stray"], "unrecognized argument \"stray\""),
        (
            &["--portserver_address"],
            "argument --portserver_address expects a value",
        ),
    ] {
        let out = run_portserver(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert_eq!(
            err,
            format!("portserver: error: {named}\nTry 'portserver --help' for the flags.\n")
        );
    }

    // A pool with no valid port: one error, no "ignoring" before it.
    let out = run_portserver(&["--portserver_static_pool=0-10"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "portserver: error: no ports to serve in --portserver_static_pool \"0-10\": \
         out of bounds port range \"0-10\" (ports are 1 to 65535)\n"
    );

    let out = run_portserver(&["--portserver_static_pool=0-0,70000-70001,x,9-8"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no ports to serve") && !err.contains("ignoring"),
        "{err}"
    );
    // Each piece is named with its reason.
    for named in [
        "\"0-0\" (ports are 1 to 65535)",
        "\"70000-70001\" (ports are 1 to 65535)",
        "\"x\" (not N-P)",
        "\"9-8\" names no port (its start is after its end)",
    ] {
        assert!(err.contains(named), "{named} missing from: {err}");
    }
}

#[test]
fn serves_with_either_flag_form_and_logs_allocations() {
    let ports = pool_ports(2);
    let address = unique_address("flags");
    // `--flag value` form, the Python alias, a bad range among good ones.
    let pool = format!("{0}-{0},{1}-{1},oops,0-3", ports[0], ports[1]);
    let mut cmd = Command::new(example_path("portserver"));
    cmd.args([
        "--portserver_unix_socket_address",
        &address,
        "--portserver_static_pool",
        &pool,
        "--verbose",
    ]);
    let server = ServerProcess::start_command(cmd, &address);
    assert!(server.wait_for_log(&format!("Serving on {address}")));
    assert!(server.wait_for_log("ignoring unparsable port range \"oops\""));
    assert!(server.wait_for_log("ignoring out of bounds port range \"0-3\""));
    assert_eq!(stat(&address, "num-ports-managed"), 2);
    let owner = sleeper();
    let a = ask(&address, owner.pid()).unwrap();
    let b = ask(&address, owner.pid()).unwrap();
    assert_ne!(a, b);
    assert!(server.wait_for_log(&format!("Allocated port {a} to pid {}", owner.pid())));
    assert_eq!(ask(&address, 1), None);
    assert!(server.wait_for_log("Denied a port to pid 1"));
    // The log format is Python's: level letter, date, time, pid.
    let line = server.log.lock().unwrap()[0].clone();
    assert!(line.starts_with(['I', 'W', 'E']), "{line}");
}

#[test]
fn the_portpicker_tool_uses_it_and_prints_its_stats() {
    let ports = pool_ports(2);
    let address = unique_address("tool");
    let pool = format!(
        "--portserver_static_pool={0}-{0},{1}-{1}",
        ports[0], ports[1]
    );
    let _server = ServerProcess::start(&address, &[&pool]);
    let owner = sleeper();
    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .arg(owner.pid().to_string())
        .env("PORTSERVER_ADDRESS", &address)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let port: u16 = text(&out.stdout).trim().parse().unwrap();
    assert!(ports.contains(&port));

    let out = Command::new(env!("CARGO_BIN_EXE_portpicker"))
        .args(["--stats", &address])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = text(&out.stdout);
    assert!(stats.contains("total-allocations 1"), "{stats}");
    assert!(stats.starts_with("client-request-errors "), "{stats}");
}

#[test]
fn pool_ports_in_the_kernels_ephemeral_range_are_reported() {
    // Ports from bind(0) lie in the kernel's ephemeral range: one warning.
    // A sandbox without /proc/sys (see .ci/sandbox) does not say the range.
    if std::fs::metadata("/proc/sys/net/ipv4/ip_local_port_range").is_err() {
        eprintln!("skipped: no /proc/sys/net/ipv4/ip_local_port_range here");
        return;
    }
    let ports = kernel_ports(2);
    let address = unique_address("range");
    let pool = format!(
        "--portserver_static_pool={0}-{0},{1}-{1}",
        ports[0], ports[1]
    );
    let server = ServerProcess::start(&address, &[&pool]);
    assert!(
        server.wait_for_log("2 of 2 pool ports are in the kernel's ephemeral range"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_non_utf8_argument_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let child = std::process::Command::new(example_path("portserver"))
        .arg(std::ffi::OsStr::from_bytes(b"--portserver_address=@\xff"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, PATIENCE);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid UTF-8") && err.contains("--help") && !err.contains("usage:"),
        "{err}"
    );
}

/// Runs `program` with `args`, stdout and stderr as given, bounded.
fn run_into(program: &std::path::Path, args: &[&str], out: File, err: File) -> Option<i32> {
    let child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    wait_output(child, PATIENCE).status.code()
}

/// Output that cannot be written (a real `/dev/full`) never panics (exit
/// 101): a usage error is still 2, help that cannot be printed is 1.
#[test]
fn unwritable_output_gives_the_documented_statuses() {
    let full = || File::options().write(true).open("/dev/full").unwrap();
    let null = || File::create("/dev/null").unwrap();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_portserver"));
    for program in [example_path("portserver"), bin] {
        let name = program.display();
        assert_eq!(
            run_into(&program, &["--bogus"], null(), full()),
            Some(2),
            "{name}"
        );
        assert_eq!(
            run_into(&program, &["--help"], full(), null()),
            Some(1),
            "{name}"
        );
        assert_eq!(
            run_into(&program, &["--help"], full(), full()),
            Some(1),
            "{name}"
        );
        let empty_pool = "--portserver_static_pool=0-0";
        assert_eq!(
            run_into(&program, &[empty_pool], null(), full()),
            Some(1),
            "{name}"
        );
        let taken = unique_address("full");
        let _listener = listen(&taken);
        let address = format!("--portserver_address={taken}");
        assert_eq!(
            run_into(&program, &[&address], null(), full()),
            Some(1),
            "{name}"
        );
    }
}

#[test]
fn the_start_up_line_says_what_an_operator_needs() {
    let mut ports = pool_ports(2);
    ports.sort_unstable();
    let pool = if ports[1] == ports[0] + 1 {
        format!("{}-{}", ports[0], ports[1])
    } else {
        format!("{},{}", ports[0], ports[1])
    };
    let flag = format!(
        "--portserver_static_pool={1}-{1},{0}-{0}",
        ports[0], ports[1]
    );
    let address = unique_address("banner");
    let server = ServerProcess::start(&address, &[&flag]);
    let serving = format!(
        "portserver] Serving on {address}: pool {pool} (2 ports), \
         at most 1000 ports per pid, no state file"
    );
    assert!(server.wait_for_log(&serving), "{}", server.log_text());
    drop(server);

    let dir = TempDir::new("banner");
    let state = dir.path().join("state");
    let state_flag = format!("--portserver_state_file={}", state.display());
    let args = [&flag[..], &state_flag, "--portserver_max_ports_per_pid=1"];
    let server = ServerProcess::start(&address, &args);
    let owner = sleeper();
    assert!(ask(&address, owner.pid()).is_some());
    drop(server);
    let server = ServerProcess::start(&address, &args);
    let restored = format!(
        "portserver] State file {}: restored 1 reservation\n",
        state.display()
    );
    let serving = format!(
        "portserver] Serving on {address}: pool {pool} (2 ports), \
         at most 1 port per pid, state file {}\n",
        state.display()
    );
    // Whole lines, so "1 reservations" or a longer line cannot pass.
    let log = server.log_text() + "\n";
    assert!(log.contains(&restored) && log.contains(&serving), "{log}");
}
