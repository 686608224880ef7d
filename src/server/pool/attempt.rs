//! An allocation as a value: [`Pool::begin`] takes a candidate port out of
//! the queue, the caller probes it (without the pool's lock), and
//! [`Pool::finish`] gives it, moves on to the next candidate, or denies.
//! [`allocate_shared`] is the one loop that drives them.

use std::sync::{Mutex, MutexGuard};

use crate::probe::Prober;
use crate::server::policy::Denial;
use crate::server::pool::{Pool, FREE, MAX_PROBES_PER_REQUEST, OWNER_CHECKS_PER_REQUEST, PROBING};
use crate::server::process::{Owner, ProcessTable};
use crate::sync::lock;

/// An allocation in progress: a candidate port taken out of the queue for
/// an owner, waiting to be probed. Made by [`Pool::begin`], consumed by
/// [`Pool::finish`]; the only way to move an allocation on, so its steps
/// cannot be taken out of order.
#[derive(Debug)]
#[must_use = "an attempt holds its port out of the queue until finished"]
pub struct Attempt {
    owner: Owner,
    port: u16,
    /// Candidates taken so far, this one included.
    tries: usize,
    budget: usize,
}

impl Attempt {
    /// The port to probe.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Who the port is for.
    #[cfg(feature = "testkit")]
    pub fn owner(&self) -> Owner {
        self.owner
    }
}

/// What [`Pool::finish`] made of an attempt.
#[derive(Debug)]
pub enum Step {
    /// The port is the owner's.
    Given(u16),
    /// The port was busy; probe this next candidate.
    Retry(Attempt),
    /// No port for this request.
    Denied(Denial),
}

/// Runs one allocation to its end on the pool inside `shared` (the
/// server's core, or a lone pool): lock, [`Pool::begin`], unlock, probe,
/// lock, [`Pool::finish`], until a port is given or denied. The lock is not
/// held across the probe (two binds, most of an allocation's cost), so
/// server threads probe in parallel; the guard of the last step comes back
/// with the port, so whatever must happen under the same lock (the journal)
/// does.
///
/// # Errors
///
/// The [`Denial`] of the pool.
pub fn allocate_shared<'a, T: AsMut<Pool>>(
    shared: &'a Mutex<T>,
    owner: Owner,
    prober: &dyn Prober,
    processes: &dyn ProcessTable,
) -> Result<(u16, MutexGuard<'a, T>), Denial> {
    let mut attempt = lock(shared).as_mut().begin(owner, processes)?;
    loop {
        let is_free = prober.is_port_free(attempt.port());
        let mut guard = lock(shared);
        match guard.as_mut().finish(attempt, is_free, processes) {
            Step::Given(port) => return Ok((port, guard)),
            Step::Retry(next) => attempt = next,
            Step::Denied(denial) => return Err(denial),
        }
    }
}

impl AsMut<Pool> for Pool {
    fn as_mut(&mut self) -> &mut Pool {
        self
    }
}

impl Pool {
    /// Begins an allocation for `owner`: takes the first free port out of
    /// the queue, to be probed (the server probes without its lock held)
    /// and reported to [`finish`](Pool::finish). While the attempt lives,
    /// its port is out of the queue: nobody else can be given it. When the
    /// queue is empty, checks [`OWNER_CHECKS_PER_REQUEST`] owners first and
    /// takes back dead ones' ports.
    ///
    /// # Errors
    ///
    /// [`Denial::Quota`] when the owner holds (or is being given) its quota,
    /// [`Denial::Exhausted`] when no port is free. Both are counted.
    pub fn begin(&mut self, owner: Owner, processes: &dyn ProcessTable) -> Result<Attempt, Denial> {
        self.stats.checked_last = 0;
        let port = self.take_candidate(owner, processes)?;
        // The candidate and every port then queued (the take may have
        // reclaimed some), so one request never probes a port twice.
        let budget = (self.free.len() + 1).min(MAX_PROBES_PER_REQUEST);
        Ok(Attempt {
            owner,
            port,
            tries: 1,
            budget,
        })
    }

    /// Ends the probe of an attempt's port. Free, the port becomes the
    /// owner's ([`Step::Given`]). Busy outside the server, it goes to the
    /// back of the queue and the attempt moves on to the next candidate
    /// ([`Step::Retry`]), until the request's probe budget is spent or the
    /// queue is empty ([`Step::Denied`], counted).
    pub fn finish(
        &mut self,
        attempt: Attempt,
        is_free: bool,
        processes: &dyn ProcessTable,
    ) -> Step {
        let Attempt {
            owner,
            port,
            tries,
            budget,
        } = attempt;
        let Some(i) = self
            .probing
            .iter()
            .position(|&(p, o)| p == port && o == owner)
        else {
            // An attempt of another pool: nothing of ours to finish.
            return Step::Denied(Denial::Exhausted);
        };
        self.probing.swap_remove(i);
        if is_free {
            self.assign(port, owner);
            self.stats.allocations += 1;
            return Step::Given(port);
        }
        self.stats.busy_skipped += 1;
        self.slot_of[port as usize] = FREE;
        self.free.push_back(port);
        if tries >= budget {
            self.stats.denied += 1;
            return Step::Denied(Denial::Exhausted);
        }
        match self.take_candidate(owner, processes) {
            Ok(port) => Step::Retry(Attempt {
                owner,
                port,
                tries: tries + 1,
                budget,
            }),
            Err(denial) => Step::Denied(denial),
        }
    }

    /// Takes the next free port out of the queue for `owner`, marking it
    /// in flight; checks the quota first (ports in flight count).
    fn take_candidate(
        &mut self,
        owner: Owner,
        processes: &dyn ProcessTable,
    ) -> Result<u16, Denial> {
        if self.max_per_owner > 0 {
            let in_flight = self.probing.iter().filter(|(_, o)| *o == owner).count();
            let held = self.held_by(owner) + in_flight;
            if held >= self.max_per_owner {
                self.stats.denied += 1;
                self.stats.denied_quota += 1;
                return Err(Denial::Quota { held });
            }
        }
        let port = match self.free.pop_front() {
            Some(port) => port,
            None => {
                self.reclaim_some(processes, OWNER_CHECKS_PER_REQUEST);
                match self.free.pop_front() {
                    Some(port) => port,
                    None => {
                        self.stats.denied += 1;
                        return Err(Denial::Exhausted);
                    }
                }
            }
        };
        self.slot_of[port as usize] = PROBING;
        self.probing.push((port, owner));
        self.stats.checked_last += 1;
        Ok(port)
    }
}
