//! The client's path to a portserver: the library call (its connect runs on
//! a helper thread so that a wedged server cannot hang it) next to the same
//! exchange with the connect made directly on the caller's thread (the
//! client before that change), against one isolated server, interleaved.
//!
//! `cargo bench --manifest-path tests/kit/Cargo.toml --bench client`.

#[path = "../../../benches/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portpick::__private::fakes::{FakeProber, FakeProcesses};
use portpick::server::{Level, PortServer, ServerConfig};
use portpick::PortServerAddress;

const PID: u32 = 3_000_000;
const TIMEOUT: Duration = Duration::from_secs(5);

/// The exchange as the client made it before the helper thread: connect on
/// this thread, write the pid, read the first line.
fn direct(addr: &SocketAddr, pid: u32) -> Option<u16> {
    let mut s = UnixStream::connect_addr(addr).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    s.write_all(format!("{pid}\n").as_bytes()).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut reply = Vec::with_capacity(8);
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&b'\n') {
                    break;
                }
            }
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&reply).ok()?.trim().parse().ok()
}

fn main() {
    banner("portpick client path (connect on a helper thread vs direct)");
    let address = format!("@portpick-bench-client-{}", std::process::id());
    let procs = Arc::new(FakeProcesses::default());
    procs.start(PID, 1);
    let config = ServerConfig::new(address.parse().expect("address"))
        .ports(30000..=39999)
        .max_ports_per_pid(0)
        .log_level(Level::Error);
    let _server = PortServer::new(config)
        .prober(FakeProber::default())
        .process_table(Arc::clone(&procs))
        .start()
        .expect("start the server");
    let addr = address
        .parse::<PortServerAddress>()
        .expect("address")
        .to_socket_addr()
        .expect("socket address");

    header("allocation round trip, isolated server (fake prober and /proc)");
    // 10 rounds of 300 per case: 6,000 of the 10,000 ports.
    let f = interleaved(
        300,
        &mut [
            &mut || {
                assert!(direct(&addr, PID).is_some(), "no port");
            },
            &mut || {
                let port =
                    portpick::get_port_from_port_server_with_timeout(&address, Some(PID), TIMEOUT);
                assert!(black_box(port).is_ok(), "no port");
            },
            &mut || {
                // The helper thread alone: spawn, one message back.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || tx.send(()))
                    .expect("spawn");
                black_box(rx.recv_timeout(TIMEOUT)).expect("message");
            },
        ],
    );
    let [before, after, thread] = <[Figure; 3]>::try_from(f).expect("three");
    row(
        "client_direct",
        "connect on the caller's thread (before)",
        &before,
        "",
    );
    row(
        "client_library",
        "library call: connect on a helper thread",
        &after,
        &format!("{} of before", ratio("client_library", &after, &before)),
    );
    row(
        "client_thread",
        "  a helper thread and one message alone",
        &thread,
        "",
    );

    header("allocation round trip, real server (binds, /proc)");
    let real = format!("@portpick-bench-client-real-{}", std::process::id());
    let ports: Vec<u16> = (15000..=24999)
        .filter(|&p| portpick::is_port_free(p))
        .collect();
    let config = ServerConfig::new(real.parse().expect("address"))
        .ports(ports)
        .max_ports_per_pid(0)
        .log_level(Level::Error);
    let _real_server = PortServer::new(config).start().expect("start the server");
    let real_addr = real
        .parse::<PortServerAddress>()
        .expect("address")
        .to_socket_addr()
        .expect("socket address");
    let me = std::process::id();
    let f = interleaved(
        300,
        &mut [
            &mut || {
                assert!(direct(&real_addr, me).is_some(), "no port");
            },
            &mut || {
                let port =
                    portpick::get_port_from_port_server_with_timeout(&real, Some(me), TIMEOUT);
                assert!(black_box(port).is_ok(), "no port");
            },
        ],
    );
    let [before, after] = <[Figure; 2]>::try_from(f).expect("two");
    row(
        "client_real_direct",
        "connect on the caller's thread (before)",
        &before,
        "",
    );
    row(
        "client_real_library",
        "library call: connect on a helper thread",
        &after,
        &format!(
            "{} of before",
            ratio("client_real_library", &after, &before)
        ),
    );
}
