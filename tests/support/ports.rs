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

/// The claims of [`pool_ports`] and [`pool_block`], held until we exit.
static HELD: Mutex<Vec<UnixDatagram>> = Mutex::new(Vec::new());

fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
}

/// Claims `port` for this test process, if it is free. Claim first, probe
/// second: a port another test process holds is never probed (a probe is
/// a brief bind, which its server would see as the port being busy).
fn pool_claim(port: u16) -> Option<UnixDatagram> {
    let name = format!("portpick-test-pool-port/{port}");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    let claim = UnixDatagram::bind_addr(&addr).ok()?;
    portpick::is_port_free(port).then_some(claim)
}

/// `n` consecutive ports as [`pool_ports`] gives them (below the
/// ephemeral range, free now, no other test's), for tests of ranges.
pub fn pool_block(n: u16) -> std::ops::RangeInclusive<u16> {
    let (low, high) = (25_000, ephemeral_start().max(25_000 + 2 * n));
    // Test processes running at once start at different places.
    let offset = std::process::id() % 997 * u32::from(n) % u32::from(high - low - n);
    let mut start = low + offset as u16;
    for _ in 0..1000 {
        let claims: Vec<UnixDatagram> = (start..start + n).map_while(pool_claim).collect();
        if claims.len() == usize::from(n) {
            HELD.lock().unwrap().extend(claims);
            return start..=start + n - 1;
        }
        start = if start + 2 * n < high { start + n } else { low };
    }
    panic!("no block of {n} free ports from {low} to {high}");
}

/// `n` distinct ports for a test server's pool: free now, below the
/// kernel's ephemeral range (so no `bind(0)` anywhere is handed one while
/// the test runs, as a port the kernel just gave out and took back would
/// be), and claimed by an abstract socket name shared by all test
/// processes, held until this process exits (so test binaries running at
/// once never share one).
pub fn pool_ports(n: usize) -> Vec<u16> {
    let ephemeral_start = ephemeral_start();
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
        if let Some(claim) = pool_claim(port) {
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

/// Whether something holds `port` on TCP (on the IPv6 wildcard, else IPv4).
pub fn tcp_busy(port: u16) -> bool {
    TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .is_err()
}

/// Whether something holds `port` on UDP (on the IPv6 wildcard, else IPv4).
pub fn udp_busy(port: u16) -> bool {
    std::net::UdpSocket::bind(("::", port))
        .or_else(|_| std::net::UdpSocket::bind(("0.0.0.0", port)))
        .is_err()
}
