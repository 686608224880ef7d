//! The open-files limit (`RLIMIT_NOFILE`, soft): std has no `getrlimit`,
//! so it comes from `/proc/self/limits`, read once per process (std cannot
//! change it either). The claims budget and the portserver's slow lane are
//! both sized from it.

use std::sync::OnceLock;

/// The soft limit on open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFiles {
    /// At most this many.
    Limit(u64),
    /// No limit.
    Unlimited,
}

/// The soft limit in the `Max open files` line of a `/proc/PID/limits`
/// text; `None` when the text does not say.
pub(crate) fn parse_open_files(text: &str) -> Option<OpenFiles> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..].split_whitespace().next()? {
        "unlimited" => Some(OpenFiles::Unlimited),
        soft => soft.parse().ok().map(OpenFiles::Limit),
    }
}

/// This process's soft limit; `None` when `/proc/self/limits` cannot be
/// read or does not say.
pub(crate) fn open_files() -> Option<OpenFiles> {
    static LIMIT: OnceLock<Option<OpenFiles>> = OnceLock::new();
    *LIMIT.get_or_init(|| parse_open_files(&std::fs::read_to_string("/proc/self/limits").ok()?))
}
