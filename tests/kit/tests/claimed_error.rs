//! A pick that fails because other processes claimed the candidates says
//! so (issue 17, finding 9), rather than that the ports were busy.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use portpick::__private::fakes::FakeProber;
use portpick::{NoFreePortReason, Picker};
use support::*;

/// Child mode: claims the ports in `PORTPICK_TEST_PORTS` under the claim
/// prefix `PORTPICK_TEST_PREFIX`, says `HELD`, and keeps them until its
/// stdin closes.
#[test]
#[ignore = "run as a child process by the test below"]
fn claiming_child() {
    if !is_child("claiming_child") {
        return;
    }
    let prefix = std::env::var("PORTPICK_TEST_PREFIX").unwrap();
    let ports: Vec<u16> = std::env::var("PORTPICK_TEST_PORTS")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let picker = Picker::with_prober(FakeProber::new().offering(ports.clone()))
        .ignore_environment()
        .claims_in(&prefix);
    for &port in &ports {
        assert_eq!(picker.pick_local(), Ok(port));
    }
    println!("HELD");
    let _ = std::io::stdin().lines().count();
}

#[test]
fn candidates_claimed_by_another_process_are_named_as_the_cause() {
    let prefix = format!("{}/", unique("claimed"));
    let ports = [40001, 40002, 40003];
    let mut child = Reaper(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "claiming_child", "--ignored", "--nocapture"])
            .env(CHILD_ENV, "claiming_child")
            .env("PORTPICK_TEST_PREFIX", &prefix)
            .env("PORTPICK_TEST_PORTS", "40001,40002,40003")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let held = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("HELD"));
    assert!(held, "the child did not claim its ports");
    // The kernel offers only the claimed ports; the random fallback finds
    // every port busy.
    let picker = Picker::with_prober(FakeProber::new().cycling(ports).all_busy(true))
        .ignore_environment()
        .claims_in(&prefix);
    let err = picker.pick_local().unwrap_err();
    assert_eq!(err.reason(), NoFreePortReason::Claimed { claimed: 10 });
    let text = err.to_string();
    assert!(
        text.contains("10 candidates claimed by other processes"),
        "{text}"
    );
    // Once the child has gone, the same picker gets one of them.
    child.kill();
    let picker = Picker::with_prober(FakeProber::new().cycling(ports).all_busy(false))
        .ignore_environment()
        .claims_in(&prefix);
    assert!(ports.contains(&picker.pick_local().unwrap()));
}
