//! The one way the library (and the `portpicker` tool) tells the user
//! something on stderr. A warning is advice: when stderr cannot be written
//! (`/dev/full`, a closed pipe) it is dropped, never a panic or an error in
//! the caller's program, as `eprintln!` would make it.
//!
//! A warning that a loop may repeat (a portserver that has no port left,
//! asked again on every pick) goes through [`warn_once`]: each distinct
//! line is written once per process.
//!
//! A process whose stderr leads nowhere (the tool's holder, whose stderr is
//! `/dev/null` so that it keeps none of the caller's streams) collects its
//! warnings instead and hands them on itself.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;

use crate::sync::lock;

/// Collected warnings, when collecting; `None`: straight to stderr.
static COLLECTED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Writes `message` and a newline to stderr, or collects it (see
/// [`collect`]). A failed write is ignored: see the module docs.
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    if let Some(collected) = lock(&COLLECTED).as_mut() {
        collected.push(message.to_string());
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(message)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// The lines [`warn_once`] has written; past this many distinct ones,
/// new ones are written without being remembered.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
const SEEN_CAP: usize = 64;

/// As [`warn`], but a line already written by this function in this
/// process is not written again.
pub(crate) fn warn_once(message: fmt::Arguments<'_>) {
    let line = message.to_string();
    if first_time(&line) {
        warn(format_args!("{line}"));
    }
}

/// Whether [`warn_once`] has not seen `line` before (and now has).
fn first_time(line: &str) -> bool {
    let mut seen = lock(&SEEN);
    if seen.iter().any(|l| l == line) {
        return false;
    }
    if seen.len() < SEEN_CAP {
        seen.push(line.to_string());
    }
    true
}

/// From now on warnings are kept in this process, for [`take_collected`].
pub(crate) fn collect() {
    lock(&COLLECTED).get_or_insert_with(Vec::new);
}

/// The warnings collected so far (see [`collect`]), oldest first.
pub(crate) fn take_collected() -> Vec<String> {
    lock(&COLLECTED)
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::first_time;

    #[test]
    fn a_line_is_new_once() {
        let line = "portpick: warn.rs test line";
        assert!(first_time(line));
        assert!(!first_time(line));
        assert!(first_time("portpick: warn.rs test line, another"));
    }
}
