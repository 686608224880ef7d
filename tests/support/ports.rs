#![allow(dead_code)]

//! Ports for test servers that no other test, or test process, uses.

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;

/// `n` distinct ports the kernel says are free now (bound at once, then
/// released), for pools that must not collide with other tests.
pub fn kernel_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("[::]:0").or_else(|_| TcpListener::bind("127.0.0.1:0")))
        .collect::<Result<_, _>>()
        .unwrap();
    let mut ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), n);
    ports
}

/// `n` distinct ports for a test server's pool: free now, below the
/// kernel's ephemeral range (so no `bind(0)` anywhere is handed one while
/// the test runs, as a port the kernel just gave out and took back would
/// be), and claimed by an abstract socket name shared by all test
/// processes, held until this process exits (so test binaries running at
/// once never share one).
pub fn pool_ports(n: usize) -> Vec<u16> {
    static HELD: Mutex<Vec<UnixDatagram>> = Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Above the default portserver pool and the random-pick range
    // (15000-24999), below the ephemeral range.
    const LOW: u16 = 25000;
    if ephemeral_start < LOW + 1000 {
        return kernel_ports(n);
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32
        | 1;
    let span = u64::from(ephemeral_start - LOW);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..100 * span {
        if ports.len() == n {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = LOW + (seed % span) as u16;
        if ports.contains(&port) {
            continue;
        }
        // Claim first, probe second: a port another test process holds is
        // never probed (a probe is a brief bind, which its server would
        // see as the port being busy).
        let name = format!("portpick-test-pool-port/{port}");
        let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) else {
            continue;
        };
        let Ok(claim) = UnixDatagram::bind_addr(&addr) else {
            continue;
        };
        if portpick::is_port_free(port) {
            HELD.lock().unwrap().push(claim);
            ports.push(port);
        }
    }
    assert_eq!(
        ports.len(),
        n,
        "not enough free ports below {ephemeral_start}"
    );
    ports.sort_unstable();
    ports
}
