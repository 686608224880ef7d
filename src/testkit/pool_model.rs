//! The one model of the pool: a harness that applies operations to a real
//! [`Pool`] with fake seams and checks it after every step against who
//! should hold what. The property test (`tests/kit/tests/pool_props.rs`)
//! and the fuzz target `pool_ops` both drive it.

use std::collections::{BTreeMap, HashSet};

use crate::server::policy::Denial;
use crate::server::pool::{Attempt, Pool, Step, MAX_PROBES_PER_REQUEST};
use crate::server::process::{presence, Owner, Presence};
use crate::testkit::fakes::{FakeProber, FakeProcesses};
pub use crate::testkit::pool_ops::{PoolOp, Releaser};

pub use crate::testkit::pool_ops::PIDS;

/// The first port of the harness's pool.
pub const POOL_BASE: u16 = 30000;

/// A pool of `size` ports from [`POOL_BASE`] with a quota, its fakes, and
/// the model of who holds what.
#[derive(Debug)]
pub struct PoolHarness {
    pool: Pool,
    size: u16,
    quota: usize,
    prober: FakeProber,
    procs: FakeProcesses,
    clock: u64,
    /// Every port the pool should hold, with its owner.
    model: BTreeMap<u16, Owner>,
    in_flight: Vec<Attempt>,
    allocations: u64,
    reclaimed: u64,
}

/// Fails the step with a message, as `assert!` would, but as a value.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

impl PoolHarness {
    /// A pool of `size` ports (at least 1), at most `quota` per owner (0:
    /// none); pids `2..2 + PIDS` run.
    pub fn new(size: u16, quota: usize) -> Self {
        let size = size.max(1);
        let procs = FakeProcesses::new();
        for pid in 2..2 + PIDS {
            procs.start(pid, 1);
        }
        PoolHarness {
            pool: Pool::new(POOL_BASE..POOL_BASE + size, quota),
            size,
            quota,
            prober: FakeProber::new(),
            procs,
            clock: 1,
            model: BTreeMap::new(),
            in_flight: Vec::new(),
            allocations: 0,
            reclaimed: 0,
        }
    }

    /// The pool under test.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn alive(&self, owner: &Owner) -> bool {
        self.procs.lookup(owner.pid) == Some(owner.start_time)
    }

    fn flying(&self, owner: Owner) -> usize {
        self.in_flight.iter().filter(|a| a.owner() == owner).count()
    }

    fn is_flying(&self, port: u16) -> bool {
        self.in_flight.iter().any(|a| a.port() == port)
    }

    /// The owner `pid` is now, if it runs.
    fn owner(&self, pid: u32) -> Option<Owner> {
        let pid = 2 + pid % PIDS;
        let start_time = self.procs.lookup(pid)?;
        Some(Owner { pid, start_time })
    }

    fn port(&self, port: u16) -> u16 {
        POOL_BASE + port % (self.size + 2)
    }

    /// Applies `op`, then checks everything.
    ///
    /// # Errors
    ///
    /// What broke.
    pub fn apply(&mut self, op: PoolOp) -> Result<(), String> {
        match op {
            PoolOp::Allocate(pid) => self.allocate(pid)?,
            PoolOp::Dies(pid) => self.procs.end(2 + pid % PIDS),
            PoolOp::Reused(pid) => {
                // Start times only grow: a gone (pid, start) never returns.
                self.clock += 1;
                self.procs.start(2 + pid % PIDS, self.clock);
            }
            PoolOp::Busy(port) => self.prober.set_busy(self.port(port), true),
            PoolOp::Free(port) => self.prober.set_busy(self.port(port), false),
            PoolOp::Sweep(n) => {
                self.pool.reclaim_some(&self.procs, n);
            }
            PoolOp::SweepAll => self.sweep_all()?,
            PoolOp::Release(port, by) => self.release(self.port(port), by)?,
            PoolOp::Restore(pid, port) => self.restore(pid, self.port(port))?,
            PoolOp::Begin(pid) => self.begin(pid)?,
            PoolOp::Finish(k) => self.finish(k)?,
            PoolOp::TableFails(yes) => self.procs.set_failing(yes),
        }
        self.check()
    }

    fn allocate(&mut self, pid: u32) -> Result<(), String> {
        let Some(owner) = self.owner(pid) else {
            return Ok(());
        };
        let held = self.model.values().filter(|o| **o == owner).count();
        ensure!(self.pool.held_by(owner) == held, "{owner:?} holds {held}");
        let held = held + self.flying(owner);
        match self.pool.allocate(owner, &self.prober, &self.procs) {
            Ok(port) => {
                ensure!(
                    !self.is_flying(port),
                    "{port} handed out while probed for another"
                );
                self.given(port, owner, Some(held))?;
            }
            Err(denial) => self.check_denial(denial, owner, held, true)?,
        }
        Ok(())
    }

    /// Checks a port just given to `owner`, who held `held` before (the
    /// quota is checked when a candidate is taken: `None` for a candidate
    /// taken earlier, since a restore may have added ports meanwhile).
    fn given(&mut self, port: u16, owner: Owner, held: Option<usize>) -> Result<(), String> {
        ensure!(self.pool.manages(port), "{port} is not in the pool");
        ensure!(!self.prober.is_busy(port), "busy port {port} handed out");
        if let Some(held) = held {
            ensure!(
                self.quota == 0 || held < self.quota,
                "quota {} broken",
                self.quota
            );
        }
        if let Some(prev) = self.model.get(&port) {
            ensure!(
                !self.alive(prev),
                "port {port} of live {prev:?} handed to {owner:?}"
            );
            self.reclaimed += 1;
        }
        ensure!(self.pool.owner_of(port) == Some(owner), "{port} not booked");
        self.model.insert(port, owner);
        self.allocations += 1;
        Ok(())
    }

    /// Checks a denial: a quota denial is a real quota; "exhausted" means
    /// every port is held, in flight or (after a probe) busy.
    fn check_denial(
        &self,
        denial: Denial,
        owner: Owner,
        held: usize,
        probed: bool,
    ) -> Result<(), String> {
        match denial {
            Denial::Quota { held: h } => {
                ensure!(
                    self.quota > 0 && h >= self.quota && h == held,
                    "quota denial at {h} of {held} for {owner:?}"
                );
            }
            Denial::Exhausted => {
                for p in POOL_BASE..POOL_BASE + self.size {
                    ensure!(
                        self.pool.owner_of(p).is_some()
                            || self.is_flying(p)
                            || (probed && self.prober.is_busy(p)),
                        "port {p} free, yet exhausted"
                    );
                }
            }
            other => return Err(format!("unexpected denial {other:?}")),
        }
        Ok(())
    }

    fn sweep_all(&mut self) -> Result<(), String> {
        for owner in self.pool.owners() {
            if matches!(presence(&self.procs, owner), Presence::Gone) {
                self.pool.release_owner(owner);
            }
        }
        if !self.procs.is_failing() {
            for (port, owner) in self.pool.held() {
                ensure!(
                    self.alive(&owner),
                    "port {port} still held by dead {owner:?}"
                );
            }
        }
        Ok(())
    }

    fn release(&mut self, port: u16, by: Releaser) -> Result<(), String> {
        let holder = self.model.get(&port).copied();
        let stranger = Owner {
            pid: 2,
            start_time: 0,
        };
        let owner = match by {
            Releaser::Holder => holder,
            Releaser::Other => self.model.values().copied().find(|o| Some(*o) != holder),
            Releaser::Stranger => None,
        }
        .unwrap_or(stranger);
        let released = self.pool.release_port(port, owner);
        ensure!(
            released == (holder == Some(owner)),
            "release {port} as {owner:?}"
        );
        if released {
            self.model.remove(&port);
            // As the pool: an undelivered port was never handed out.
            self.allocations = self.allocations.saturating_sub(1);
            ensure!(self.pool.owner_of(port).is_none(), "{port} still booked");
        }
        Ok(())
    }

    fn restore(&mut self, pid: u32, port: u16) -> Result<(), String> {
        let Some(owner) = self.owner(pid) else {
            return Ok(());
        };
        let was_free =
            self.pool.manages(port) && self.pool.owner_of(port).is_none() && !self.is_flying(port);
        ensure!(
            self.pool.restore(port, owner) == was_free,
            "restore of {port}"
        );
        if was_free {
            self.model.insert(port, owner);
        }
        Ok(())
    }

    fn begin(&mut self, pid: u32) -> Result<(), String> {
        let Some(owner) = self.owner(pid) else {
            return Ok(());
        };
        let held = self.pool.held_by(owner) + self.flying(owner);
        match self.pool.begin(owner, &self.procs) {
            Ok(attempt) => self.took(attempt, held),
            Err(denial) => self.check_denial(denial, owner, held, false),
        }
    }

    /// Checks a candidate just taken out of the queue.
    fn took(&mut self, attempt: Attempt, held: usize) -> Result<(), String> {
        let port = attempt.port();
        ensure!(
            self.pool.manages(port) && !self.is_flying(port),
            "{port} taken twice"
        );
        ensure!(
            self.quota == 0 || held < self.quota,
            "quota {} broken",
            self.quota
        );
        if let Some(prev) = self.model.get(&port) {
            ensure!(!self.alive(prev), "port {port} of live {prev:?} taken");
        }
        self.in_flight.push(attempt);
        Ok(())
    }

    fn finish(&mut self, k: usize) -> Result<(), String> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let attempt = self.in_flight.swap_remove(k % self.in_flight.len());
        let (port, owner) = (attempt.port(), attempt.owner());
        let free = !self.prober.is_busy(port);
        let held = self.pool.held_by(owner) + self.flying(owner);
        match self.pool.finish(attempt, free, &self.procs) {
            Step::Given(given) => {
                ensure!(free && given == port, "gave {given} for {port}");
                self.given(port, owner, None)?;
            }
            Step::Retry(next) => {
                ensure!(!free, "free port {port} not given");
                self.took(next, held)?;
            }
            // The budget was set when the attempt began: ports freed since
            // may be left unprobed, so "exhausted" claims nothing here.
            Step::Denied(Denial::Exhausted) => ensure!(!free, "free port {port} not given"),
            Step::Denied(denial) => {
                ensure!(!free, "free port {port} not given");
                self.check_denial(denial, owner, held, true)?;
            }
        }
        Ok(())
    }

    /// The pool's invariants, and the pool against the model.
    fn check(&mut self) -> Result<(), String> {
        self.pool.check_invariants()?;
        for (port, owner) in &self.model {
            if self.alive(owner) {
                ensure!(
                    self.pool.owner_of(*port) == Some(*owner),
                    "live {owner:?} lost {port}"
                );
            }
        }
        let before = self.model.len();
        let pool = &self.pool;
        self.model
            .retain(|port, owner| pool.owner_of(*port) == Some(*owner));
        self.reclaimed += (before - self.model.len()) as u64;
        for (port, owner) in self.pool.held() {
            ensure!(
                self.model.get(&port) == Some(&owner),
                "pool and model differ on {port}"
            );
        }
        let s = self.pool.stats();
        ensure!(s.managed == u64::from(self.size), "managed {}", s.managed);
        ensure!(
            s.probing == self.in_flight.len() as u64,
            "probing {}",
            s.probing
        );
        ensure!(s.free + s.held + s.probing == s.managed, "counts {s:?}");
        ensure!(s.held == self.model.len() as u64, "held {}", s.held);
        let owners: HashSet<&Owner> = self.model.values().collect();
        ensure!(s.owners == owners.len() as u64, "owners {}", s.owners);
        ensure!(s.allocations == self.allocations, "allocations {s:?}");
        ensure!(s.reclaimed == self.reclaimed, "reclaimed {s:?}");
        ensure!(s.denied_quota <= s.denied, "denials {s:?}");
        ensure!(
            s.checked_last <= 2 * MAX_PROBES_PER_REQUEST as u64,
            "checked {}",
            s.checked_last
        );
        Ok(())
    }
}
