//! The pure parsers under random input: none may panic, and what they
//! accept reads back the same (examples: the root's tests/parsers.rs).

mod support;

use portpick::__private::protocol::{
    format_reply, parse_reply, parse_stats, Request, RequestError, MAX_REQUEST_LEN,
};
use portpick::__private::server::{parse_port_ranges, parse_stat, parse_state};
use proptest::prelude::*;
use support::whole;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_request_bytes_parse_without_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
        match whole(&data) {
            Ok(Request::Allocate { pid }) => {
                prop_assert!(data.len() <= MAX_REQUEST_LEN);
                // Only digits, an optional leading minus and a line end.
                let text = std::str::from_utf8(&data).unwrap();
                let line = text.trim_end_matches('\n').trim_end_matches('\r');
                prop_assert!(line.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()));
                if pid >= 0 && line.len() < 19 {
                    prop_assert_eq!(line.parse::<i64>().unwrap(), pid);
                }
            }
            Ok(Request::AllocateIn { namespace, .. }) => {
                prop_assert!(data.starts_with(b"pidns ") && namespace != 0);
            }
            Ok(Request::Stats) => prop_assert!(data.starts_with(b"stats")),
            Err(e) => { let _ = e.to_string(); }
        }
    }

    #[test]
    fn pids_round_trip(pid in 0i64..=i64::MAX, crlf in any::<bool>()) {
        let mut line = pid.to_string().into_bytes();
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        if line.len() <= MAX_REQUEST_LEN {
            prop_assert_eq!(whole(&line), Ok(Request::Allocate { pid }));
        } else {
            prop_assert_eq!(whole(&line), Err(RequestError::TooLong { len: line.len() }));
        }
    }

    #[test]
    fn replies_round_trip(port in 1u16..) {
        prop_assert_eq!(parse_reply(&format_reply(port)), Ok(Some(port)));
    }

    #[test]
    fn any_reply_bytes_parse_without_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = parse_reply(&data);
        let _ = parse_stats(&data);
    }

    #[test]
    fn any_stat_bytes_parse_without_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_stat(&data);
    }

    #[test]
    fn stat_with_any_command_name(name in "[ -~]{0,15}", start in any::<u64>(), state in "[RSDZTtXI]") {
        let line = format!("99 ({name}) {state} 1 99 99 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n");
        let s = parse_stat(line.as_bytes()).unwrap();
        prop_assert_eq!(s.start_time, start);
        prop_assert_eq!(s.state, state.as_bytes()[0]);
    }

    #[test]
    fn ranges_match_a_model(pieces in proptest::collection::vec((0u32..70000, 0u32..70000), 0..5)) {
        let spec: Vec<String> = pieces.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let (ports, skipped) = parse_port_ranges(&spec.join(","));
        let mut want = std::collections::BTreeSet::new();
        let mut bad = 0;
        for &(a, b) in &pieces {
            if a < 1 || b > 65535 { bad += 1; continue; }
            want.extend(a..=b);
        }
        let got: Vec<u32> = ports.iter().map(|&p| u32::from(p)).collect();
        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(skipped.len(), bad + usize::from(pieces.is_empty()));
    }

    #[test]
    fn any_range_text_parses_without_panic(spec in "[0-9, \\-x]{0,40}") {
        let (ports, _) = parse_port_ranges(&spec);
        prop_assert!(ports.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(!ports.contains(&0));
    }

    #[test]
    fn state_entries_round_trip(entries in proptest::collection::vec((1u16.., 2u32.., any::<u64>()), 0..20), junk in proptest::collection::vec(any::<u8>(), 0..30)) {
        let mut file = b"portpick-state 1 boot=b\n".to_vec();
        for (port, pid, start) in &entries {
            file.extend_from_slice(format!("{port} {pid} {start}\n").as_bytes());
        }
        let clean = parse_state(&file);
        prop_assert_eq!(clean.entries.len(), entries.len());
        prop_assert!(clean.errors.is_empty());
        // Junk appended (a torn write) never loses the good lines.
        file.extend_from_slice(&junk);
        let torn = parse_state(&file);
        prop_assert!(torn.entries.len() >= entries.len());
        prop_assert_eq!(&torn.entries[..entries.len()], &clean.entries[..]);
    }
}
