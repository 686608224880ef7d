//! The open-files limit (`RLIMIT_NOFILE`, soft): std has no `getrlimit`,
//! so it comes from `/proc/self/limits`, read once per process (std cannot
//! change it either). The claims budget and the portserver's slow lane are
//! both sized from it; the one parser below is all either reads.

use std::sync::OnceLock;

/// The soft limit in the `Max open files` line of a `/proc/PID/limits`
/// text, `u64::MAX` for `unlimited`; `None` when the text does not say.
///
/// ```
/// use portpick::__private::server::parse_open_files_limit;
/// let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
///               Max open files            128                  1048576              files\n";
/// assert_eq!(parse_open_files_limit(limits), Some(128));
/// let unlimited = "Max open files unlimited unlimited files\n";
/// assert_eq!(parse_open_files_limit(unlimited), Some(u64::MAX));
/// assert_eq!(parse_open_files_limit("Max processes 5 5\n"), None);
/// ```
pub fn parse_open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

/// This process's soft limit (`u64::MAX`: unlimited); `None` when
/// `/proc/self/limits` cannot be read or does not say.
pub(crate) fn open_files_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT
        .get_or_init(|| parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_open_files_limit;

    #[test]
    fn reads_the_soft_open_files_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63704                63704                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(text), Some(1024));
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(text), Some(u64::MAX));
        assert_eq!(parse_open_files_limit("Max processes 5 5\n"), None);
        assert_eq!(parse_open_files_limit("Max open files  lots\n"), None);
    }
}
