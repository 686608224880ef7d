//! Rate limiting: warnings and errors from one call site are written at
//! most a few a window; the rest are counted, and one line sums them up
//! (with the last of them) when the window is over.

use std::fmt;
use std::time::{Duration, Instant};

use super::Level;

/// Warnings and errors from one call site: at most `BURST` a `WINDOW`.
/// One: a flood (bad requests, failing accepts, sandboxed clients the
/// server cannot identify) costs a line a second and a count, whatever its
/// rate.
pub(super) const WINDOW: Duration = Duration::from_secs(1);
pub(super) const BURST: u64 = 1;

/// Recent warnings or errors, per call site (a handful of entries).
#[derive(Default)]
pub(super) struct Repeats(Vec<Repeat>);

/// Recent warnings or errors from one call site.
struct Repeat {
    key: &'static str,
    level: Level,
    since: Instant,
    /// Lines in this window, written or not.
    seen: u64,
    /// The last line not written, to show what was suppressed.
    last: String,
}

impl Repeat {
    /// The line that sums up what this window suppressed, if anything.
    fn summary(&self) -> Option<(Level, String)> {
        let n = self.seen.saturating_sub(BURST);
        (n > 0).then(|| {
            (
                self.level,
                format!("{n} more like this in {WINDOW:?}; the last: {}", self.last),
            )
        })
    }
}

/// Whether a warning or error is written.
pub(super) enum Verdict {
    /// Written, after the line summing up the call site's last window, if
    /// it suppressed anything.
    Write(Option<(Level, String)>),
    /// Too many from its call site in this window: counted, not written.
    Suppress,
}

impl Repeats {
    /// Counts a line of `level` from the call site `key` at `now`.
    pub(super) fn admit(
        &mut self,
        key: &'static str,
        level: Level,
        args: fmt::Arguments<'_>,
        now: Instant,
    ) -> Verdict {
        match self.0.iter_mut().find(|r| r.key == key) {
            Some(r) if now.duration_since(r.since) < WINDOW => {
                r.seen += 1;
                if r.seen > BURST {
                    r.last = args.to_string();
                    return Verdict::Suppress;
                }
                Verdict::Write(None)
            }
            Some(r) => {
                let summary = r.summary();
                r.since = now;
                r.seen = 1;
                Verdict::Write(summary)
            }
            None => {
                self.0.push(Repeat {
                    key,
                    level,
                    since: now,
                    seen: 1,
                    last: String::new(),
                });
                Verdict::Write(None)
            }
        }
    }

    /// The summaries of the windows over at `now` (all of them with `all`),
    /// each of which starts a new window.
    pub(super) fn due(&mut self, all: bool, now: Instant) -> Vec<(Level, String)> {
        let mut due = Vec::new();
        for r in &mut self.0 {
            if all || now.duration_since(r.since) >= WINDOW {
                if let Some(s) = r.summary() {
                    due.push(s);
                }
                // A new window: the next line of this kind is written.
                r.since = now;
                r.seen = 0;
            }
        }
        due
    }
}
