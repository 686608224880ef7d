//! `--portserver_static_pool`: comma-separated inclusive `N-P` ranges, parsed
//! as Python's portserver does (bad pieces are reported and skipped).

use std::fmt;

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
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Unparsable { piece } => {
                write!(f, "ignoring unparsable port range {piece:?}")
            }
            RangeError::OutOfBounds { piece } => {
                write!(f, "ignoring out of bounds port range {piece:?}")
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
/// use portpick::server::parse_port_ranges;
/// let (ports, skipped) = parse_port_ranges("15000-15002,9-8,0-5,x");
/// assert_eq!(ports, vec![15000, 15001, 15002]);
/// assert_eq!(skipped.len(), 2);
/// ```
pub fn parse_port_ranges(spec: &str) -> (Vec<u16>, Vec<RangeError>) {
    let mut present = vec![false; 65536];
    let mut skipped = Vec::new();
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
        for port in start..=end {
            present[port as usize] = true;
        }
    }
    let ports = (1..=65535u16).filter(|&p| present[p as usize]).collect();
    (ports, skipped)
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
