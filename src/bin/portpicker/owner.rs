//! Whose life a lasting claim follows: the process PID names when the call
//! is made, as its pid *and* start time, so a pid reused by another process
//! is another owner and ends the claim.
//!
//! The two functions here are the only places the tool asks `/proc` about
//! PID, so that they can be made namespace-aware in one place: when this
//! `/proc` shows another pid namespace than the caller's (issue 16, point
//! 6), PID means the caller's view and must be resolved through the
//! `NSpid` lines of `/proc/*/status`. Not done yet: today PID is read in
//! the `/proc` we see, which is right when the caller shares our pid
//! namespace and that `/proc` is its own.

use portpick::__private::server::{presence, Owner, Presence, ProcFs, ProcessTable};

/// The process `pid` names now. `None`: nobody a claim could follow (pid
/// 0 or 1, no such process, no `/proc`): such a call gets a port whose
/// claim ends with the call. Pid 1 as for the portserver: it means the
/// caller's parent has gone (the caller was reparented to init), and a
/// claim for init's life would never end.
pub fn resolve(pid: u32) -> Option<Owner> {
    if pid <= 1 {
        return None;
    }
    let start_time = ProcFs::new().start_time(pid).ok()??;
    Some(Owner { pid, start_time })
}

/// Whether `owner` has surely gone: no process has its pid and start time.
/// A `/proc` that cannot be read now (no descriptor left) keeps it, as
/// the portserver does.
pub fn is_gone(owner: Owner) -> bool {
    matches!(presence(&ProcFs::new(), owner), Presence::Gone)
}
