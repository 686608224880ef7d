//! What one call of the tool asks for, parsed once from the command line
//! (by `args.rs`) and handed to the holder in a fixed form of its own (the
//! holder never sees the user's arguments, so the caller's defaults are
//! the holder's).

use std::net::IpAddr;
use std::ops::RangeInclusive;

use portpick::__private::server::Owner;
use portpick::{NoFreePortError, Picker};

use crate::args::{self, ArgsError, PickArgs, Ports, MAX_SECONDS};

/// How many excluded ports go in one holder argument: a few kB, far below
/// the kernel's limit on one argument (128 kB).
const EXCLUDE_CHUNK: usize = 1000;

/// One call: `portpicker [PID] [BIND_TIMEOUT] [OPTIONS]`.
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
    /// How many ports, and whether as a block.
    pub ports: Ports,
    /// Only ports in this range.
    pub range: Option<RangeInclusive<u16>>,
    /// Never these ports.
    pub exclude: Vec<u16>,
    /// Free on this address.
    pub address: Option<IpAddr>,
}

impl Want {
    /// How many ports.
    pub fn count(&self) -> usize {
        match self.ports {
            Ports::One => 1,
            Ports::Many(n) | Ports::Block(n) => n,
        }
    }

    /// Whether a portserver may give the ports: it gives single ports from
    /// a pool of its own, so it can honour none of the options.
    pub fn portserver_may_serve(&self) -> bool {
        !matches!(self.ports, Ports::Block(_))
            && self.range.is_none()
            && self.exclude.is_empty()
            && self.address.is_none()
    }

    /// The picker for [`Want::pick`]: local only (the call asks the
    /// portserver itself, for PID), with this process's claims switch.
    /// Its claims end when it is dropped: keep it while they must hold.
    pub fn picker(&self) -> Picker {
        let mut picker = Picker::new()
            .portserver(None)
            .claims(portpick::__private::claims_on())
            .exclude(self.exclude.iter().copied());
        if let Some(range) = &self.range {
            picker = picker.range(range.clone());
        }
        if let Some(ip) = self.address {
            picker = picker.address(ip);
        }
        picker
    }

    /// Picks the ports locally on `picker` (from [`Want::picker`]), each
    /// claimed by this process; none when not all can be had.
    pub fn pick(&self, picker: &Picker) -> Result<Vec<u16>, NoFreePortError> {
        match self.ports {
            Ports::One => picker.pick_unused_port().map(|port| vec![port]),
            Ports::Many(n) => picker.pick_many(n),
            Ports::Block(n) => picker.pick_consecutive(n).map(|block| block.collect()),
        }
    }
}

impl Call {
    /// Parses the user's arguments.
    ///
    /// # Errors
    ///
    /// What is wrong, for the usage message.
    pub fn parse(words: &[String]) -> Result<Call, ArgsError> {
        let PickArgs {
            pid,
            bind_timeout,
            ports,
            range,
            exclude,
            address,
        } = args::parse_pick(words)?;
        Ok(Call {
            pid: pid.unwrap_or_else(std::os::unix::process::parent_id),
            bind_timeout,
            want: Want {
                // One port is one port, however asked for.
                ports: match ports {
                    Ports::Many(1) => Ports::One,
                    ports => ports,
                },
                range,
                exclude,
                address,
            },
        })
    }

    /// What is left to pick locally once the portserver gave `served`
    /// (none: all of it); `None`: nothing is left.
    pub fn rest(&self, served: &[u16]) -> Option<Call> {
        let left = self.want.count().checked_sub(served.len())?;
        let mut rest = self.clone();
        match (left, served.is_empty()) {
            (0, _) => return None,
            (_, true) => return Some(rest),
            (1, false) => rest.want.ports = Ports::One,
            (n, false) => rest.want.ports = Ports::Many(n),
        }
        // The portserver handed them to PID: a local pick must not, the
        // more so as a server's pool may lie in the kernel's ephemeral
        // range, where local picks come from.
        rest.want.exclude.extend(served);
        Some(rest)
    }

    /// The holder's arguments (after its hidden first one): `PID OWNER
    /// BIND_TIMEOUT PORTS RANGE ADDRESS [EXCLUDE...]`. OWNER is
    /// `PID:START` in our `/proc`, or `-` when there is no owner to
    /// follow; PORTS `many:N` or `block:N`; RANGE
    /// `LO-HI` or `-`; ADDRESS an IP or `-`; each EXCLUDE a comma list.
    pub fn holder_args(&self, owner: Option<Owner>) -> Vec<String> {
        let want = &self.want;
        let ports = match want.ports {
            Ports::Block(n) => format!("block:{n}"),
            _ => format!("many:{}", want.count()),
        };
        let mut args = vec![
            self.pid.to_string(),
            // The owner's pid in our /proc, which in a sandbox that sees
            // an ancestor's /proc is not PID.
            owner.map_or_else(
                || "-".to_string(),
                |o| format!("{}:{}", o.pid, o.start_time),
            ),
            self.bind_timeout.to_string(),
            ports,
            want.range
                .as_ref()
                .map_or_else(|| "-".to_string(), |r| format!("{}-{}", r.start(), r.end())),
            want.address
                .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        ];
        for chunk in want.exclude.chunks(EXCLUDE_CHUNK) {
            let list: Vec<String> = chunk.iter().map(u16::to_string).collect();
            args.push(list.join(","));
        }
        args
    }

    /// Reads what [`Call::holder_args`] wrote.
    pub fn from_holder_args(args: &[String]) -> Option<(Call, Option<Owner>)> {
        let [pid, start, seconds, ports, range, address, exclude @ ..] = args else {
            return None;
        };
        let pid = pid.parse().ok()?;
        let owner = match start.as_str() {
            "-" => None,
            owner => {
                let (pid, start) = owner.split_once(':')?;
                Some(Owner {
                    pid: pid.parse().ok()?,
                    start_time: start.parse().ok()?,
                })
            }
        };
        let (shape, n) = ports.split_once(':')?;
        let n = n.parse().ok().filter(|&n| n > 0)?;
        let ports = match shape {
            "many" if n == 1 => Ports::One,
            "many" => Ports::Many(n),
            "block" => Ports::Block(n),
            _ => return None,
        };
        let range = match range.as_str() {
            "-" => None,
            range => {
                let (lo, hi) = range.split_once('-')?;
                Some(lo.parse().ok()?..=hi.parse().ok()?)
            }
        };
        let address = match address.as_str() {
            "-" => None,
            ip => Some(ip.parse().ok()?),
        };
        let mut excluded = Vec::new();
        for list in exclude {
            for port in list.split(',') {
                excluded.push(port.parse().ok()?);
            }
        }
        let call = Call {
            pid,
            bind_timeout: parse_seconds(seconds)?,
            want: Want {
                ports,
                range,
                exclude: excluded,
                address,
            },
        };
        Some((call, owner))
    }
}

fn parse_seconds(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|t| (0.0..=MAX_SECONDS).contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_holder_reads_what_the_call_wrote() {
        let owner = Owner {
            pid: 42,
            start_time: 777,
        };
        let many: Vec<String> = (1..=2500).map(|p| p.to_string()).collect();
        let many = many.join(",");
        for words in [
            &["42", "1.5"][..],
            &["42", "--count", "3", "--range", "2000-2100"],
            &["42", "0", "--count=1"],
            &["42", "--consecutive", "4", "--address", "::1"],
            &["42", "--exclude", "5,6,7", "--address=127.0.0.1"],
            &["42", "--exclude", &many],
        ] {
            let call = Call::parse(&args(words)).unwrap();
            for owner in [Some(owner), None] {
                let written = call.holder_args(owner);
                assert_eq!(
                    Call::from_holder_args(&written),
                    Some((call.clone(), owner)),
                    "{words:?}"
                );
            }
        }
    }

    #[test]
    fn what_the_portserver_gave_is_not_picked_again() {
        let call = Call::parse(&args(&["42", "--count", "4"])).unwrap();
        assert_eq!(call.rest(&[]), Some(call.clone()));
        let rest = call.rest(&[7, 9]).unwrap();
        assert_eq!(
            (rest.want.ports, rest.want.exclude),
            (Ports::Many(2), vec![7, 9])
        );
        assert_eq!(call.rest(&[7, 8, 9]).unwrap().want.ports, Ports::One);
        assert_eq!(call.rest(&[6, 7, 8, 9]), None);
        assert_eq!(call.rest(&[5, 6, 7, 8, 9]), None);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["x"][..],
            &["1", "-1"],
            &["1", "86401"],
            &["1", "NaN"],
            &["1", "2", "3"],
            &["--count=1=2"],
            &["--help=x"],
        ] {
            assert!(Call::parse(&args(bad)).is_err(), "{bad:?}");
        }
        for bad in [
            &["1", "-", "0", "many:1", "-"][..],
            &["1", "x", "0", "many:1", "-", "-"],
            &["1", "-", "0", "many:0", "-", "-"],
            &["1", "-", "0", "many", "-", "-"],
            &["1", "-", "0", "lots:2", "-", "-"],
            &["1", "-", "0", "many:2", "5", "-"],
            &["1", "-", "0", "many:2", "-", "localhost"],
            &["1", "-", "0", "many:2", "-", "-", "1,x"],
        ] {
            assert_eq!(Call::from_holder_args(&args(bad)), None, "{bad:?}");
        }
    }
}
