//! Port ranges: `--portserver_static_pool` (comma-separated inclusive `N-P`
//! ranges, parsed as Python's portserver does: bad pieces are reported and
//! skipped), and how the pool overlaps the kernel's own ranges.

use std::fmt;

use crate::server::log::count;

/// A piece of the pool description that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// Not of the form `N-P` with decimal numbers.
    Unparsable {
        /// The piece as written.
        piece: String,
    },
    /// Starts below 1 or ends above 65535.
    OutOfBounds {
        /// The piece as written.
        piece: String,
    },
    /// Starts after it ends, so it names no port (Python skips these
    /// silently; [`parse_port_ranges`] does too, and only an error about an
    /// empty pool names them).
    Backwards {
        /// The piece as written.
        piece: String,
    },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Unparsable { piece } => {
                write!(f, "unparsable port range {piece:?} (not N-P)")
            }
            RangeError::OutOfBounds { piece } => {
                write!(
                    f,
                    "out of bounds port range {piece:?} (ports are 1 to 65535)"
                )
            }
            RangeError::Backwards { piece } => {
                write!(
                    f,
                    "port range {piece:?} names no port (its start is after its end)"
                )
            }
        }
    }
}

impl std::error::Error for RangeError {}

/// Parses `N-P[,X-Y...]` into the sorted set of ports it names, and the
/// pieces skipped. As Python: a range whose start is past its end names no
/// port; numbers may have white space around them.
///
/// ```
/// use portpick::__private::server::parse_port_ranges;
/// let (ports, skipped) = parse_port_ranges("15000-15002,9-8,0-5,x");
/// assert_eq!(ports, vec![15000, 15001, 15002]);
/// assert_eq!(skipped.len(), 2);
/// ```
pub fn parse_port_ranges(spec: &str) -> (Vec<u16>, Vec<RangeError>) {
    let pool = parse_pool(spec);
    (pool.ports, pool.skipped)
}

/// What a pool description names, in one parse.
pub(crate) struct Pool {
    /// The ports, sorted.
    pub(crate) ports: Vec<u16>,
    /// The pieces skipped (not `N-P`, out of bounds).
    pub(crate) skipped: Vec<RangeError>,
    /// The ranges whose start is after their end: they name no port, as
    /// in Python, and only an error about an empty pool names them.
    pub(crate) backwards: Vec<RangeError>,
}

/// As [`parse_port_ranges`], also keeping the backwards ranges.
pub(crate) fn parse_pool(spec: &str) -> Pool {
    let mut present = vec![false; 65536];
    let mut skipped = Vec::new();
    let mut backwards = Vec::new();
    for piece in spec.split(',') {
        let parsed = piece
            .split_once('-')
            .and_then(|(a, b)| Some((number(a)?, number(b)?)));
        let Some((start, end)) = parsed else {
            skipped.push(RangeError::Unparsable {
                piece: piece.to_string(),
            });
            continue;
        };
        if start < 1 || end > 65535 {
            skipped.push(RangeError::OutOfBounds {
                piece: piece.to_string(),
            });
            continue;
        }
        if start > end {
            backwards.push(RangeError::Backwards {
                piece: piece.to_string(),
            });
        }
        for port in start..=end {
            present[port as usize] = true;
        }
    }
    let ports = (1..=65535u16).filter(|&p| present[p as usize]).collect();
    Pool {
        ports,
        skipped,
        backwards,
    }
}

/// A decimal number with optional white space around it, saturating far
/// beyond the port range so huge numbers stay out of bounds.
fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |v, b| {
        v.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// The ports as the flag writes them (`15000-24999`, `8080,9000-9010`),
/// at most `max_ranges` ranges and then how many more: a pool of scattered
/// ports stays one line.
pub fn format_port_ranges(ports: &[u16], max_ranges: usize) -> String {
    let mut sorted = ports.to_vec();
    sorted.retain(|&p| p != 0);
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for port in sorted {
        match ranges.last_mut() {
            Some((_, end)) if u32::from(*end) + 1 == u32::from(port) => *end = port,
            _ => ranges.push((port, port)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(max_ranges)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let mut text = shown.join(",");
    let more = ranges.len().saturating_sub(max_ranges);
    if more > 0 {
        text.push_str(&format!(" and {}", count(more as u64, "more range")));
    }
    text
}

/// `ip_local_port_range`'s text (`32768\t60999`): the kernel's ephemeral
/// range, if it reads as one.
pub fn parse_kernel_range(text: &str) -> Option<(u16, u16)> {
    let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// `ip_local_reserved_ports`'s text (`8080,9000-9010`): the ranges it
/// names; unreadable pieces are left out.
pub fn parse_kernel_list(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// How many pool ports fall in the kernel's ranges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelOverlap {
    /// In the ephemeral range, where outgoing connections take ports.
    pub ephemeral: usize,
    /// In `ip_local_reserved_ports`.
    pub reserved: usize,
}

/// Counts the pool's ports in the ephemeral range and in the reserved
/// ranges.
pub fn kernel_overlap(
    ports: &[u16],
    ephemeral: Option<(u16, u16)>,
    reserved: &[(u16, u16)],
) -> KernelOverlap {
    let within = |p: u16, (lo, hi): (u16, u16)| lo <= p && p <= hi;
    KernelOverlap {
        ephemeral: ephemeral.map_or(0, |r| ports.iter().filter(|&&p| within(p, r)).count()),
        reserved: ports
            .iter()
            .filter(|&&p| reserved.iter().any(|&r| within(p, r)))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::{format_port_ranges, kernel_overlap, KernelOverlap};

    #[test]
    fn pool_ports_in_the_kernel_ranges_are_counted() {
        let overlap = kernel_overlap(&[100, 200, 300], Some((150, 250)), &[(300, 300)]);
        assert_eq!(
            overlap,
            KernelOverlap {
                ephemeral: 1,
                reserved: 1
            }
        );
    }

    #[test]
    fn port_ranges_are_written_as_the_flag_takes_them() {
        assert_eq!(
            format_port_ranges(&[5, 3, 4, 9, 11, 12, 4], 8),
            "3-5,9,11-12"
        );
        assert_eq!(format_port_ranges(&[65534, 65535, 1], 8), "1,65534-65535");
        assert_eq!(format_port_ranges(&[1, 3, 5], 2), "1,3 and 1 more range");
        assert_eq!(
            format_port_ranges(&[1, 3, 5, 7], 2),
            "1,3 and 2 more ranges"
        );
        assert_eq!(format_port_ranges(&[0], 2), "");
    }
}
