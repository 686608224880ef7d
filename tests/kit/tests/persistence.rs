//! `--portserver_state_file` with the test kit's fake process table:
//! thousands of owners that come and go compact the journal.
#![cfg(target_os = "linux")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use portpick::__private::fakes::{FakeProber, FakeProcesses};
use portpick::server::{Level, PortServer, ServerConfig};
use support::*;

/// Thousands of allocations by owners that come and go: the journal is
/// compacted, stays small, and still holds exactly the live reservations.
#[test]
fn the_journal_is_compacted() {
    let dir = TempDir::new("state");
    let state = dir.path().join("state");
    let table = Arc::new(FakeProcesses::new());
    let ports: Vec<u16> = (40000..40040).collect();
    let config = ServerConfig::new(unique_address("compact").parse().unwrap())
        .ports(ports.clone())
        .state_file(Some(state.clone()))
        .reclaim_interval(Duration::from_millis(5))
        .log_level(Level::Error);
    let address = config.address.to_string();
    let server = PortServer::new(config)
        .prober(FakeProber::new())
        .process_table(Arc::clone(&table))
        .start()
        .unwrap();
    let mut pid = 1000;
    for round in 0..70 {
        // 30 owners take one port each, then all but the last die.
        for _ in 0..30 {
            pid += 1;
            table.start(pid, round);
            assert!(ask(&address, pid).is_some(), "round {round} pid {pid}");
        }
        // This round's 29 and the last round's survivor.
        for dead in pid - 30..pid {
            table.end(dead);
        }
        assert!(eventually(|| stat(&address, "num-ports-held") <= 1));
    }
    assert_eq!(stat(&address, "total-allocations"), 70 * 30);
    let lines = journal(&state).len();
    assert!(lines <= 1100, "journal not compacted: {lines} lines");
    drop(server);

    // The last owner alive is restored from the compacted journal.
    let config = ServerConfig::new(unique_address("compact").parse().unwrap())
        .ports(ports)
        .state_file(Some(state.clone()))
        .log_level(Level::Error);
    let address = config.address.to_string();
    let _server = PortServer::new(config)
        .prober(FakeProber::new())
        .process_table(Arc::clone(&table))
        .start()
        .unwrap();
    assert_eq!(stat(&address, "num-ports-held"), 1);
    assert_eq!(journal(&state).len(), 1);
    assert_eq!(journal(&state)[0].1, pid);
}
