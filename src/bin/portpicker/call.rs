//! What one call of the tool asks for, parsed once from the command line
//! and handed to the holder in a fixed form of its own (the holder never
//! sees the user's arguments, so the caller's defaults are the holder's).

use portpick::__private::server::Owner;
use portpick::{NoFreePortError, Picker};

/// The longest BIND_TIMEOUT: a day. Holding a port longer after the tool
/// has exited is a mistake (a typo'd number), not a plan.
pub const MAX_BIND_TIMEOUT: f64 = 86_400.0;

/// One call: `portpicker [PID] [BIND_TIMEOUT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The process the ports are for.
    pub pid: u32,
    /// Seconds to keep the ports bound after the call (0: not bound).
    pub bind_timeout: f64,
    /// What to pick.
    pub want: Want,
}

/// What to pick: the one description of a pick, whoever makes it (the
/// holder, or the call itself when there is no holder). Options that
/// shape a pick (how many, where) belong here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// How many ports.
    pub count: usize,
}

impl Want {
    /// Picks the ports locally (no portserver), claimed by this process.
    pub fn pick(&self, picker: &Picker) -> Result<Vec<u16>, NoFreePortError> {
        let mut ports = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            match picker.pick_local() {
                Ok(port) => ports.push(port),
                Err(e) => {
                    for &port in &ports {
                        picker.return_port(port);
                    }
                    return Err(e);
                }
            }
        }
        Ok(ports)
    }
}

impl Call {
    /// Parses the user's arguments. `Err`: what is wrong, for the usage
    /// message.
    pub fn parse(args: &[String]) -> Result<Call, String> {
        if let Some(extra) = args.get(2) {
            return Err(format!("unexpected argument {extra:?}"));
        }
        let pid = match args.first() {
            None => std::os::unix::process::parent_id(),
            Some(a) => a.parse::<u32>().map_err(|_| format!("invalid PID {a:?}"))?,
        };
        let bind_timeout = match args.get(1) {
            None => 0.0,
            Some(a) => parse_seconds(a).ok_or_else(|| {
                format!("invalid BIND_TIMEOUT {a:?}: seconds from 0 to {MAX_BIND_TIMEOUT}")
            })?,
        };
        Ok(Call {
            pid,
            bind_timeout,
            want: Want { count: 1 },
        })
    }

    /// The holder's arguments (after its hidden first one): `PID START
    /// BIND_TIMEOUT COUNT`, START `-` when there is no owner to follow.
    pub fn holder_args(&self, owner: Option<Owner>) -> [String; 4] {
        [
            self.pid.to_string(),
            owner.map_or_else(|| "-".to_string(), |o| o.start_time.to_string()),
            self.bind_timeout.to_string(),
            self.want.count.to_string(),
        ]
    }

    /// Reads what [`Call::holder_args`] wrote.
    pub fn from_holder_args(args: &[String]) -> Option<(Call, Option<Owner>)> {
        let [pid, start, seconds, count] = args else {
            return None;
        };
        let pid = pid.parse().ok()?;
        let owner = match start.as_str() {
            "-" => None,
            start => Some(Owner {
                pid,
                start_time: start.parse().ok()?,
            }),
        };
        let call = Call {
            pid,
            bind_timeout: parse_seconds(seconds)?,
            want: Want {
                count: count.parse().ok().filter(|&n| n > 0)?,
            },
        };
        Some((call, owner))
    }
}

fn parse_seconds(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|t| (0.0..=MAX_BIND_TIMEOUT).contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_holder_reads_what_the_call_wrote() {
        let call = Call::parse(&args(&["42", "1.5"])).unwrap();
        let owner = Owner {
            pid: 42,
            start_time: 777,
        };
        for owner in [Some(owner), None] {
            let written = call.holder_args(owner);
            assert_eq!(
                Call::from_holder_args(&written),
                Some((call.clone(), owner))
            );
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["x"][..],
            &["1", "-1"],
            &["1", "86401"],
            &["1", "NaN"],
            &["1", "2", "3"],
        ] {
            assert!(Call::parse(&args(bad)).is_err(), "{bad:?}");
        }
        for bad in [
            &["1", "-", "0"][..],
            &["1", "x", "0", "1"],
            &["1", "-", "0", "0"],
        ] {
            assert_eq!(Call::from_holder_args(&args(bad)), None, "{bad:?}");
        }
    }
}
