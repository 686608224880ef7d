use super::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn pick(args: &[&str]) -> Result<PickArgs, ArgsError> {
    parse_pick(&strings(args))
}

fn wait(args: &[&str]) -> Result<WaitArgs, ArgsError> {
    parse_wait(&strings(args))
}

#[test]
fn a_plain_pick_keeps_its_meaning() {
    let p = pick(&[]).unwrap();
    assert_eq!((p.pid, p.bind_timeout, p.ports), (None, 0.0, Ports::One));
    let p = pick(&["123", "1.5"]).unwrap();
    assert_eq!((p.pid, p.bind_timeout), (Some(123), 1.5));
    assert!(pick(&["123", "1.5", "7"]).is_err());
    assert!(pick(&["x"]).is_err());
    assert!(pick(&["1", "86401"]).is_err());
}

#[test]
fn pick_options_combine_in_any_order() {
    let p = pick(&[
        "--count=3",
        "123",
        "--range",
        "20000-20099",
        "--exclude",
        "20001,20002",
        "--exclude=20005",
        "2",
        "--address",
        "::1",
    ])
    .unwrap();
    assert_eq!(p.pid, Some(123));
    assert_eq!(p.bind_timeout, 2.0);
    assert_eq!(p.ports, Ports::Many(3));
    assert_eq!(p.range, Some(20000..=20099));
    assert_eq!(p.exclude, vec![20001, 20002, 20005]);
    assert_eq!(p.address, Some("::1".parse().unwrap()));
    assert_eq!(
        pick(&["--consecutive", "4"]).unwrap().ports,
        Ports::Block(4)
    );
}

#[test]
fn bad_pick_options_say_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--count", "0"],
            "invalid --count \"0\": a number of ports from 1 to 65535",
        ),
        (&["--count"], "argument --count expects a value"),
        (
            &["--count", "2", "--consecutive", "2"],
            "argument --consecutive cannot be used with --count",
        ),
        (
            &["--range", "9-8"],
            "invalid --range \"9-8\": LO must not be above HI",
        ),
        (
            &["--range", "0-8"],
            "invalid --range \"0\": a port is 1 to 65535",
        ),
        (
            &["--range", "80"],
            "invalid --range \"80\": LO-HI, ports 1 to 65535",
        ),
        (
            &["--exclude", "1,,2"],
            "invalid --exclude \"\": a port is 1 to 65535",
        ),
        (
            &["--address", "localhost"],
            "invalid --address \"localhost\": an IPv4 or IPv6 address",
        ),
        (&["--frobnicate"], "unexpected argument \"--frobnicate\""),
        (&["-x"], "unexpected argument \"-x\""),
    ];
    for (args, want) in cases {
        assert_eq!(pick(args).unwrap_err().to_string(), *want, "{args:?}");
    }
    // The same flag twice: the last wins.
    assert_eq!(
        pick(&["--count=2", "--count=3"]).unwrap().ports,
        Ports::Many(3)
    );
}

#[test]
fn wait_options() {
    let w = wait(&["--wait", "8080"]).unwrap();
    assert_eq!((w.port, w.timeout, w.address), (8080, DEFAULT_WAIT, None));
    let w = wait(&["--timeout=0.5", "--address", "127.0.0.1", "--wait=80"]).unwrap();
    assert_eq!(w.port, 80);
    assert_eq!(w.timeout, Duration::from_millis(500));
    assert_eq!(w.address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(
        wait(&["--timeout", "1"]).unwrap_err(),
        ArgsError::MissingValue {
            flag: "--wait".into()
        }
    );
    assert!(wait(&["--wait", "0"]).is_err());
    assert!(wait(&["--wait", "80", "--timeout", "-1"]).is_err());
    assert!(wait(&["--wait", "80", "--timeout", "nan"]).is_err());
    assert!(wait(&["--wait", "80", "123"]).is_err());
    assert!(wants_wait(&strings(&["--timeout", "1", "--wait=3"])));
    assert!(!wants_wait(&strings(&["123"])));
}

#[test]
fn version_alone() {
    assert_eq!(wants_version(&strings(&["--version"])), Ok(true));
    assert_eq!(wants_version(&strings(&["-V"])), Ok(true));
    assert_eq!(wants_version(&strings(&["123"])), Ok(false));
    assert!(wants_version(&strings(&["--version", "x"])).is_err());
    assert_eq!(
        wants_version(&strings(&["--version=2"]))
            .unwrap_err()
            .to_string(),
        "argument --version takes no value, got \"2\""
    );
}

/// lexopt's habit: every short sequence of nasty words through both
/// parsers; they never panic, and what they accept is well formed.
#[test]
fn short_sequences_of_nasty_words() {
    let words = [
        "--count",
        "--consecutive",
        "--range",
        "--exclude",
        "--address",
        "--wait",
        "--timeout",
        "--count=",
        "=",
        "-",
        "--",
        "0",
        "1",
        "65535",
        "65536",
        "1-2",
        "2-1",
        "-1",
        "1.5",
        "nan",
        "inf",
        "::1",
        "1,2",
        ",",
        "é",
        "",
    ];
    let mut seqs: Vec<Vec<&str>> = vec![vec![]];
    let mut last = seqs.clone();
    for _ in 0..3 {
        last = last
            .iter()
            .flat_map(|s| words.iter().map(move |w| [&s[..], &[*w]].concat()))
            .collect();
        seqs.extend(last.iter().cloned());
    }
    for seq in &seqs {
        if let Ok(p) = pick(seq) {
            assert!(p
                .range
                .as_ref()
                .map_or(true, |r| 0 < *r.start() && r.start() <= r.end()));
            assert!(p.exclude.iter().all(|&x| x > 0));
            assert!(matches!(
                p.ports,
                Ports::One | Ports::Many(1..) | Ports::Block(1..)
            ));
            assert!((0.0..=MAX_SECONDS).contains(&p.bind_timeout));
        }
        if let Ok(w) = wait(seq) {
            assert!(w.port > 0 && w.timeout.as_secs_f64() <= MAX_SECONDS);
        }
        let _ = wants_version(&strings(seq));
    }
}

#[test]
fn a_value_on_a_flag_that_takes_none_is_refused() {
    for args in [
        &["--help=x"][..],
        &["123", "--stats=@a"],
        &["--version=1", "2"],
    ] {
        assert!(
            matches!(pick(args), Err(ArgsError::UnwantedValue { .. })),
            "{args:?}"
        );
    }
    assert!(matches!(
        wait(&["--wait", "80", "--help=x"]),
        Err(ArgsError::UnwantedValue { .. })
    ));
}

#[test]
fn stats_takes_one_address_at_most() {
    assert_eq!(parse_stats(&strings(&["--stats"])), Ok(None));
    assert_eq!(
        parse_stats(&strings(&["--stats", "@a"])),
        Ok(Some("@a".to_string()))
    );
    for bad in [&["--stats", "--count"][..], &["--stats", "@a", "b"]] {
        assert!(parse_stats(&strings(bad)).is_err(), "{bad:?}");
    }
}
