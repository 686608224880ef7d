//! Waiting for a server to listen: TCP connects with a short backoff,
//! bounded by a deadline that the last try does not overrun by more than
//! itself.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The pause after the first failed round; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(1);
/// The longest pause between tries: a server that starts listening is
/// seen within this.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(50);
/// The longest one connect may take, so that a silent address does not
/// keep the others from being tried.
const MAX_TRY: Duration = Duration::from_secs(1);
/// The shortest limit of a connect (`connect_timeout` refuses zero).
const MIN_TRY: Duration = Duration::from_millis(10);

/// The pause after `delay`: twice as long, at most [`MAX_DELAY`].
pub(crate) fn next_delay(delay: Duration) -> Duration {
    (delay * 2).min(MAX_DELAY)
}

/// Returns once a TCP connect to `addr` succeeds (the connection is closed
/// at once: the server sees one connection without data). Tries again
/// after a pause that grows from 1 ms to at most 50 ms, until `timeout`
/// has passed; the last try ends at most one try after it.
///
/// ```no_run
/// use std::time::Duration;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// portpick::wait_until_listening(addr, Duration::from_secs(5))?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// [`io::ErrorKind::TimedOut`], naming the address, the timeout and what
/// the last try met (such as "connection refused").
pub fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    wait_for_any(&[addr], timeout)
}

/// As [`wait_until_listening`], until any of `addrs` takes a connection
/// (tried in turn): the tool's loopback is `127.0.0.1` or `::1`.
pub fn wait_for_any(addrs: &[SocketAddr], timeout: Duration) -> io::Result<()> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address to wait for",
        ));
    }
    // `None`: a timeout too long to add to now, that is, none.
    let deadline = Instant::now().checked_add(timeout);
    let mut delay = FIRST_DELAY;
    let mut last = None;
    let mut first = true;
    loop {
        for addr in addrs {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) && !first {
                return Err(timed_out(addrs, timeout, last));
            }
            first = false;
            let limit = left.unwrap_or(MAX_TRY).clamp(MIN_TRY, MAX_TRY);
            match TcpStream::connect_timeout(addr, limit) {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let left = deadline.map_or(MAX_DELAY, |d| d.saturating_duration_since(Instant::now()));
        std::thread::sleep(delay.min(left));
        delay = next_delay(delay);
    }
}

fn timed_out(addrs: &[SocketAddr], timeout: Duration, last: Option<io::Error>) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        NotListening {
            addrs: addrs.to_vec(),
            timeout,
            last,
        },
    )
}

/// Nothing took a connection before the timeout.
#[derive(Debug)]
struct NotListening {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    /// What the last try met; printed, so not a `source()`.
    last: Option<io::Error>,
}

impl fmt::Display for NotListening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing listening on ")?;
        for (i, addr) in self.addrs.iter().enumerate() {
            let sep = if i == 0 { "" } else { " or " };
            write!(f, "{sep}{addr}")?;
        }
        write!(f, " after {:?}", self.timeout)?;
        match &self.last {
            Some(e) => write!(f, " (last try: {e})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for NotListening {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_grows_to_at_most_50_ms() {
        let mut delay = FIRST_DELAY;
        let mut seen = vec![delay];
        for _ in 0..20 {
            delay = next_delay(delay);
            seen.push(delay);
        }
        assert!(seen.iter().all(|&d| d <= Duration::from_millis(50)));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delay, MAX_DELAY);
    }

    #[test]
    fn no_address_is_an_error_at_once() {
        let e = wait_for_any(&[], Duration::from_secs(3600)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
