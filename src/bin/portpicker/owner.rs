//! Whose life a lasting claim follows: the process PID names when the call
//! is made, as its pid *and* start time, so a pid reused by another process
//! is another owner and ends the claim.
//!
//! PID means what it means to the caller: a pid of the caller's pid
//! namespace (the holder's too: it is the caller's child). Where `/proc`
//! shows that namespace, PID is read there; in a sandbox whose `/proc` is
//! an ancestor's (`unshare -pf` without `--mount-proc`), the same number
//! names another process there (pid 2 is the host's `kthreadd`), so PID is
//! found through the `NSpid` lines of `/proc/*/status` and followed under
//! its pid in that `/proc`.

use portpick::__private::pidns;
use portpick::__private::server::{presence, Owner, Presence, ProcFs};

/// The process `pid` names now, as our `/proc` knows it. `None`: nobody a
/// claim could follow (pid 0, the host's pid 1, no such process, a kernel
/// thread, no `/proc`, or a namespace we cannot see into): such a call
/// gets a port whose claim ends with the call. The host's init never
/// ends (and pid 1 there means the caller's parent has gone: the caller
/// was reparented), nor does a kernel thread; a sandbox's own pid 1 ends
/// with the sandbox, and is followed, as the portserver does.
pub fn resolve(pid: u32) -> Option<Owner> {
    let namespace = pidns::own_namespace().ok()?;
    if pid == 0 || (pid == 1 && namespace == pidns::INIT_NAMESPACE) {
        return None;
    }
    let process = pidns::resolve(namespace, pid).ok()??;
    if process.kernel_thread {
        return None;
    }
    Some(Owner {
        pid: process.pid,
        start_time: process.start_time,
    })
}

/// Whether `owner` has surely gone: no process has its pid and start time
/// in our `/proc` (where [`resolve`] found it). A `/proc` that cannot be
/// read now (no descriptor left) keeps it, as the portserver does.
pub fn is_gone(owner: Owner) -> bool {
    matches!(presence(&ProcFs::new(), owner), Presence::Gone)
}
