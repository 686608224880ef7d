//! The root's test helpers (tests/support/), and the helpers that need the
//! test kit's fakes.
#![allow(dead_code, unused_imports)]

#[path = "../../../support/mod.rs"]
mod shared;

pub use shared::*;

use std::sync::Arc;

use portpick::__private::fakes::{FakeProber, FakeProcesses};
use portpick::server::{Level, PortServer, ServerConfig, ServerHandle};

/// An embedded server on `ports` whose prober calls every port free and
/// whose processes are the fake table `procs` (for pid reuse and pools
/// larger than real processes make practical).
pub fn fake_server(
    ports: impl IntoIterator<Item = u16>,
    procs: &Arc<FakeProcesses>,
    f: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (String, ServerHandle) {
    let address = unique_address("fake");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports)
        .log_level(Level::Error);
    let server = PortServer::new(f(config))
        .prober(FakeProber::new())
        .process_table(Arc::clone(procs))
        .start()
        .unwrap();
    (address, server)
}
