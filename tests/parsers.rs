//! The pure parsers: wire requests and replies, `/proc/PID/stat`, pool
//! ranges, state files, addresses and the portserver's flags, by example
//! (properties over random input: tests/kit/tests/parsers.rs).

mod support;

use portpick::__private::protocol::{
    format_reply, format_stats, parse_reply, parse_request, parse_stats, Request, RequestError,
    Status, MAX_REQUEST_LEN,
};
use portpick::__private::server::{
    parse_args, parse_port_ranges, parse_stat, parse_state, ArgsError, Command, RangeError,
    StatError,
};
use portpick::server::Level;
use portpick::PortServerAddress;
use support::whole;

#[test]
fn requests_python_clients_send() {
    assert_eq!(whole(b"4242\n"), Ok(Request::Allocate { pid: 4242 }));
    assert_eq!(whole(b"4242"), Ok(Request::Allocate { pid: 4242 }));
    assert_eq!(whole(b"4242\r\n"), Ok(Request::Allocate { pid: 4242 }));
    assert_eq!(whole(b"stats\n"), Ok(Request::Stats));
    // Denied later, not malformed: Python parses these as numbers too.
    assert_eq!(whole(b"0\n"), Ok(Request::Allocate { pid: 0 }));
    assert_eq!(whole(b"-7\n"), Ok(Request::Allocate { pid: -7 }));
    assert_eq!(
        whole(b"99999999999999999999"),
        Ok(Request::Allocate { pid: i64::MAX })
    );
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let bad: &[(&[u8], RequestError)] = &[
        (b"", RequestError::Empty),
        (b"\n", RequestError::Empty),
        (b"12 34\n", RequestError::InvalidByte { byte: b' ', at: 2 }),
        (b" 123\n", RequestError::InvalidByte { byte: b' ', at: 0 }),
        (b"+123\n", RequestError::InvalidByte { byte: b'+', at: 0 }),
        (b"0x1f\n", RequestError::InvalidByte { byte: b'x', at: 1 }),
        (b"1_000\n", RequestError::InvalidByte { byte: b'_', at: 1 }),
        (b"12\xff\n", RequestError::InvalidByte { byte: 0xff, at: 2 }),
        (b"-\n", RequestError::InvalidByte { byte: b'-', at: 0 }),
        (b"123\n456\n", RequestError::TrailingData),
        (b"123456789012345678901", RequestError::TooLong { len: 21 }),
        (b"stats", RequestError::InvalidByte { byte: b's', at: 0 }),
    ];
    for (input, want) in bad {
        let got = whole(input);
        if *input == b"stats" {
            // Without its newline `stats` is still the stats word.
            assert_eq!(got, Ok(Request::Stats));
            continue;
        }
        assert_eq!(
            got.as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn completeness_follows_newline_or_size() {
    let open = |buf: &[u8]| parse_request(buf, false);
    assert_eq!(open(b"12"), Ok(Status::Partial));
    assert_eq!(
        open(b"12\n"),
        Ok(Status::Complete(Request::Allocate { pid: 12 }))
    );
    assert_eq!(
        open(&[b'1'; MAX_REQUEST_LEN + 1]),
        Err(RequestError::TooLong {
            len: MAX_REQUEST_LEN + 1
        })
    );
    assert_eq!(open(&[b'1'; MAX_REQUEST_LEN]), Ok(Status::Partial));
    // Bad bytes wait for the line's end, as a good request would.
    assert_eq!(open(b"0x"), Ok(Status::Partial));
}

#[test]
fn replies() {
    assert_eq!(format_reply(15000), b"15000\n");
    assert_eq!(parse_reply(b"15000\n"), Ok(Some(15000)));
    assert_eq!(parse_reply(b" 15000 \n"), Ok(Some(15000)));
    assert_eq!(parse_reply(b""), Ok(None));
    assert_eq!(parse_reply(b"0\n"), Ok(None));
    assert!(parse_reply(b"65536\n").is_err());
    assert!(parse_reply(b"123456\n").is_err());
    assert!(parse_reply(b"nope\n").is_err());
    assert!(parse_reply(b"\n").is_err());
    let stats = format_stats([("a", 1), ("b-c", 22)]);
    assert_eq!(stats, b"a 1\nb-c 22\n");
    assert_eq!(
        parse_stats(&stats),
        Some(vec![("a".to_string(), 1), ("b-c".to_string(), 22)])
    );
    assert_eq!(parse_stats(b"a x\n"), None);
}

#[test]
fn proc_stat_lines() {
    let real = b"1234 (cat) R 1 1234 1234 34816 1234 4194304 95 0 0 0 0 0 0 0 20 0 1 0 5551212 5648384 189 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    let s = parse_stat(real).unwrap();
    assert_eq!((s.state, s.start_time), (b'R', 5551212));
    assert!(s.is_running());
    // A command name with spaces and parentheses, as a process may choose.
    let odd = b"7 (x) (y z) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n";
    let s = parse_stat(odd).unwrap();
    assert_eq!((s.state, s.start_time), (b'Z', 42));
    assert!(!s.is_running(), "a zombie holds no socket");
    // A main thread that called pthread_exit while another thread runs: the
    // leader shows Z, field 20 counts it and the live thread.
    let leader = b"7615 (z) Z 7612 7612 32670 0 -1 4227084 120 0 0 0 0 0 0 0 20 0 2 0 105860 0 0 18446744073709551615 0 0 0 0 0 0 0 6 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    let s = parse_stat(leader).unwrap();
    assert_eq!((s.state, s.threads, s.start_time), (b'Z', 2, 105860));
    assert!(s.is_running(), "its other threads hold its sockets");
    assert_eq!(parse_stat(b"7 (x S 1"), Err(StatError::NoCommand));
    assert_eq!(
        parse_stat(b"7 (x) S 1 2 3"),
        Err(StatError::MissingField { field: 9 })
    );
    assert_eq!(
        parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0"),
        Err(StatError::MissingField { field: 22 })
    );
    assert_eq!(
        parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 -1 0 42 0"),
        Err(StatError::BadThreads)
    );
    assert_eq!(
        parse_stat(b"7 (x)"),
        Err(StatError::MissingField { field: 3 })
    );
    assert_eq!(
        parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4x2 0"),
        Err(StatError::BadStartTime)
    );
    assert_eq!(
        parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999 0"),
        Err(StatError::BadStartTime)
    );
}

#[test]
fn our_own_open_files_limit_parses() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = match line.split_whitespace().nth(3).unwrap() {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    };
    assert_eq!(
        portpick::__private::server::parse_open_files_limit(&limits),
        soft,
        "{line}"
    );
}

#[test]
fn our_own_proc_stat_parses() {
    let buf = std::fs::read("/proc/self/stat").unwrap();
    let s = parse_stat(&buf).unwrap();
    assert!(s.is_running());
    assert!(s.start_time > 0);
}

#[test]
fn ranges_as_python() {
    let (ports, skipped) = parse_port_ranges("15000-24999");
    assert_eq!(ports.len(), 10000);
    assert!(skipped.is_empty());
    let (ports, skipped) = parse_port_ranges("5-3, 10 - 12 ,11-13,x,0-4,65535-65536,1-1");
    assert_eq!(ports, vec![1, 10, 11, 12, 13]);
    assert_eq!(
        skipped,
        vec![
            RangeError::Unparsable {
                piece: "x".to_string()
            },
            RangeError::OutOfBounds {
                piece: "0-4".to_string()
            },
            RangeError::OutOfBounds {
                piece: "65535-65536".to_string()
            },
        ]
    );
    assert!(skipped[0].to_string().contains("\"x\""));
    let (ports, skipped) = parse_port_ranges("");
    assert!(ports.is_empty());
    assert_eq!(skipped.len(), 1);
    let (ports, _) = parse_port_ranges("1-99999999999999999999999");
    assert!(ports.is_empty());
}

#[test]
fn state_files() {
    let s = parse_state(b"portpick-state 1 boot=abc\n15000 42 777\n15001 43 778\n15000 44 779\n");
    assert_eq!(s.boot_id.as_deref(), Some("abc"));
    assert!(!s.bad_header);
    assert_eq!(s.entries.len(), 3, "later lines win when loaded");
    assert!(s.errors.is_empty());
    let s = parse_state(b"garbage\n15000 42 777\n0 42 1\n15000 1 1\n15000 x 1\n\xff\xfe\n15001 42");
    assert!(s.bad_header);
    assert_eq!(s.entries.len(), 1);
    let lines: Vec<usize> = s.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3, 4, 5, 6, 7]);
    assert!(s.errors[0].to_string().starts_with("line 1:"));
    let s = parse_state(b"");
    assert!(!s.bad_header && s.entries.is_empty());
}

#[test]
fn addresses() {
    let a: PortServerAddress = "@unittest-portserver".parse().unwrap();
    assert_eq!(
        a,
        PortServerAddress::Abstract(b"unittest-portserver".to_vec())
    );
    assert_eq!(a.to_string(), "@unittest-portserver");
    let p: PortServerAddress = "/run/portserver.sock".parse().unwrap();
    assert_eq!(p, PortServerAddress::Path("/run/portserver.sock".into()));
    assert!("".parse::<PortServerAddress>().is_err());
    assert!(""
        .parse::<PortServerAddress>()
        .unwrap_err()
        .to_string()
        .contains("empty"));
    // Too long for sun_path: an error when used, not a panic.
    let long: PortServerAddress = format!("@{}", "x".repeat(200)).parse().unwrap();
    let err = long.to_socket_addr().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let long: PortServerAddress = format!("/{}", "x".repeat(200)).parse().unwrap();
    assert!(long.to_socket_addr().is_err());
}

#[test]
fn portserver_flags() {
    let Ok(Command::Run { config, skipped }) = parse_args([
        "--portserver_static_pool=20000-20009,x",
        "--portserver_address",
        "@a",
        "--verbose",
        "--portserver_max_ports_per_pid=7",
        "--portserver_state_file",
        "/tmp/s",
    ]) else {
        panic!("flags refused");
    };
    assert_eq!(config.ports, (20000..=20009).collect::<Vec<_>>());
    assert_eq!(skipped.len(), 1);
    assert_eq!(config.address.to_string(), "@a");
    assert_eq!(config.log_level, Level::Verbose);
    assert_eq!(config.max_ports_per_pid, 7);
    assert_eq!(
        config.state_file.as_deref(),
        Some(std::path::Path::new("/tmp/s"))
    );

    let Ok(Command::Run { config, .. }) =
        parse_args(["--portserver_unix_socket_address=/x/y", "--debug"])
    else {
        panic!("alias refused");
    };
    assert_eq!(config.address.to_string(), "/x/y");
    assert_eq!(config.ports.len(), 10000, "default pool 15000-24999");
    assert_eq!(config.log_level, Level::Debug);

    assert!(matches!(parse_args(["-h"]), Ok(Command::Help)));
    assert!(matches!(parse_args(["--help"]), Ok(Command::Help)));
    for (args, code) in [
        (&["--bogus"][..], 2),
        (&["--portserver_address"][..], 2),
        (&["--portserver_max_ports_per_pid=lots"][..], 2),
        (&["--verbose=1"][..], 2),
        (&["--help=x"][..], 2),
        (&["--version=x"][..], 2),
        (&["--portserver_static_pool=0-0"][..], 1),
        (&["--portserver_static_pool=a-b,9-1"][..], 1),
    ] {
        let err = parse_args(args.iter().copied()).unwrap_err();
        assert_eq!(err.exit_code(), code, "{args:?}: {err}");
    }
    assert!(matches!(
        parse_args(["--bogus"]),
        Err(ArgsError::UnknownFlag { .. })
    ));
}
