//! The operations the pool model applies: what the property test generates
//! and what the fuzz target reads from bytes.

/// Pids `2..2 + PIDS` run when the harness starts.
pub const PIDS: u32 = 8;

/// Who gives a port back in [`PoolOp::Release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Releaser {
    /// The port's holder.
    Holder,
    /// Another owner the pool knows (who may hold other ports).
    Other,
    /// An owner the pool never saw.
    Stranger,
}

/// One step. Pids are taken modulo [`PIDS`] (plus 2), ports modulo the pool
/// size plus 2 (so a few are outside the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOp {
    /// A whole allocation for a pid (probe included).
    Allocate(u32),
    /// The process ends.
    Dies(u32),
    /// The pid is reused by a new process, started later.
    Reused(u32),
    /// A port becomes busy outside the server.
    Busy(u16),
    /// And free again.
    Free(u16),
    /// The request path's bounded check of a few owners.
    Sweep(usize),
    /// The background sweep of every owner.
    SweepAll,
    /// A port given back (an undelivered answer).
    Release(u16, Releaser),
    /// A reservation restored from the journal.
    Restore(u32, u16),
    /// A server thread begins an allocation and goes off to probe...
    Begin(u32),
    /// ...and one in flight (chosen modulo their number) reports its probe.
    Finish(usize),
    /// The process table fails (out of descriptors) or recovers.
    TableFails(bool),
}

impl PoolOp {
    /// Reads an operation from two bytes (an opcode and an argument), as
    /// the fuzz target does.
    pub fn from_bytes(code: u8, arg: u8) -> PoolOp {
        let pid = u32::from(arg);
        let port = u16::from(arg);
        match code % 13 {
            0 | 1 => PoolOp::Allocate(pid),
            2 => PoolOp::Dies(pid),
            3 => PoolOp::Reused(pid),
            4 => PoolOp::Busy(port),
            5 => PoolOp::Free(port),
            6 => PoolOp::Sweep(usize::from(arg % 4)),
            7 => PoolOp::SweepAll,
            8 => {
                let by = if arg & 0x80 != 0 {
                    Releaser::Other
                } else if arg & 0x40 != 0 {
                    Releaser::Stranger
                } else {
                    Releaser::Holder
                };
                PoolOp::Release(port, by)
            }
            9 => PoolOp::Restore(pid, port),
            10 => PoolOp::Begin(pid),
            11 => PoolOp::Finish(usize::from(arg)),
            _ => PoolOp::TableFails(arg & 1 == 0),
        }
    }
}
