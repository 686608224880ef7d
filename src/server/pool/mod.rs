//! The port pool: which port is free, which owner holds which ports, and the
//! allocation and reclaim rules. Pure bookkeeping: probes and liveness come
//! in through the `Prober` and `ProcessTable` seams.
//!
//! Cost: free ports wait in a FIFO queue (round robin, as Python, so a
//! returned port rests before it is reused), each owner keeps the list of
//! its ports, and a port's owner is found by indexing a table by port. An
//! allocation pops the queue; when the queue is empty the pool checks the
//! liveness of a few owners (not ports) from a rotating cursor, so saying
//! "no port" costs the same whether 10 or 10,000 ports are held. The server
//! also sweeps all owners in the background, off the request path.

use std::collections::{HashMap, VecDeque};

mod attempt;
#[cfg(feature = "testkit")]
mod check;

pub use attempt::allocate_shared;
#[cfg(feature = "testkit")]
pub use attempt::{Attempt, Step};

use crate::server::process::{presence, Owner, Presence, ProcessTable};

/// At most this many owners are checked for liveness in one allocation
/// that finds no free port.
pub const OWNER_CHECKS_PER_REQUEST: usize = 2;
/// At most this many free ports are probed in one allocation: beyond it, a
/// pool full of ports busy outside the server says "no port" rather than
/// probing for seconds.
pub const MAX_PROBES_PER_REQUEST: usize = 64;

/// Counters the pool keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Ports the pool manages.
    pub managed: u64,
    /// Ports free to hand out.
    pub free: u64,
    /// Ports held by owners.
    pub held: u64,
    /// Ports out of the queue being probed for a request.
    pub probing: u64,
    /// Owners holding at least one port.
    pub owners: u64,
    /// Ports handed out since start.
    pub allocations: u64,
    /// Requests that got no port because of the pool (exhausted, quota).
    pub denied: u64,
    /// Of those, denials for the per-owner quota.
    pub denied_quota: u64,
    /// Ports probed for the last request.
    pub checked_last: u64,
    /// Ports taken back from dead owners.
    pub reclaimed: u64,
    /// Free ports found in use outside the server and skipped.
    pub busy_skipped: u64,
    /// Owner liveness checks made.
    pub owner_checks: u64,
    /// Of those, checks the process table could not answer (the owner was
    /// kept).
    pub owner_check_errors: u64,
}

#[derive(Debug)]
struct OwnerEntry {
    owner: Owner,
    ports: Vec<u16>,
}

/// The pool. See the module docs for its costs.
#[derive(Debug)]
pub struct Pool {
    /// For each port number: the owner slot holding it, `FREE`, or
    /// `UNMANAGED`.
    slot_of: Vec<u32>,
    /// The managed ports, for `check_invariants` (which must not cost a
    /// scan of all 65,536 slots: the fuzzer calls it after every step).
    #[cfg(feature = "testkit")]
    managed: Vec<u16>,
    free: VecDeque<u16>,
    /// Ports taken out of the queue to be probed without the pool's lock
    /// held, with the owner they are meant for (a few at most: one per
    /// server thread).
    probing: Vec<(u16, Owner)>,
    owners: Vec<OwnerEntry>,
    index: HashMap<Owner, u32>,
    cursor: usize,
    max_per_owner: usize,
    stats: PoolStats,
}

const FREE: u32 = u32::MAX;
const UNMANAGED: u32 = u32::MAX - 1;
const PROBING: u32 = u32::MAX - 2;

impl Pool {
    /// A pool of `ports` (duplicates and port 0 are ignored), all free, with
    /// at most `max_per_owner` ports per owner (0: no limit).
    pub fn new(ports: impl IntoIterator<Item = u16>, max_per_owner: usize) -> Pool {
        let mut slot_of = vec![UNMANAGED; 65536];
        let mut free = VecDeque::new();
        for port in ports {
            if port != 0 && slot_of[port as usize] == UNMANAGED {
                slot_of[port as usize] = FREE;
                free.push_back(port);
            }
        }
        let stats = PoolStats {
            managed: free.len() as u64,
            ..PoolStats::default()
        };
        Pool {
            slot_of,
            #[cfg(feature = "testkit")]
            managed: free.iter().copied().collect(),
            free,
            probing: Vec::new(),
            owners: Vec::new(),
            index: HashMap::new(),
            cursor: 0,
            max_per_owner,
            stats,
        }
    }

    /// For the test kit: [`allocate_shared`] on this pool alone: hands `owner` the first free
    /// port the prober finds free on TCP and UDP.
    ///
    /// # Errors
    ///
    /// [`Denial::Quota`](crate::server::policy::Denial::Quota) or
    /// [`Denial::Exhausted`](crate::server::policy::Denial::Exhausted).
    #[cfg(feature = "testkit")]
    pub fn allocate(
        &mut self,
        owner: Owner,
        prober: &dyn crate::probe::Prober,
        processes: &dyn ProcessTable,
    ) -> Result<u16, crate::server::policy::Denial> {
        let alone = std::sync::Mutex::new(self);
        let given = allocate_shared(&alone, owner, prober, processes);
        given.map(|(port, _)| port)
    }

    fn assign(&mut self, port: u16, owner: Owner) {
        let slot = match self.index.get(&owner) {
            Some(&slot) => slot,
            None => {
                let slot = self.owners.len() as u32;
                self.owners.push(OwnerEntry {
                    owner,
                    ports: Vec::new(),
                });
                self.index.insert(owner, slot);
                slot
            }
        };
        self.owners[slot as usize].ports.push(port);
        self.slot_of[port as usize] = slot;
    }

    /// How many ports `owner` holds.
    pub fn held_by(&self, owner: Owner) -> usize {
        self.index
            .get(&owner)
            .map_or(0, |&s| self.owners[s as usize].ports.len())
    }

    /// Checks up to `limit` owners from the rotating cursor and takes back
    /// the ports of those that are gone. Returns the ports reclaimed.
    pub fn reclaim_some(&mut self, processes: &dyn ProcessTable, limit: usize) -> usize {
        let mut reclaimed = 0;
        for _ in 0..limit.min(self.owners.len()) {
            if self.cursor >= self.owners.len() {
                self.cursor = 0;
            }
            let owner = self.owners[self.cursor].owner;
            self.stats.owner_checks += 1;
            match presence(processes, owner) {
                Presence::Gone => {
                    // The last owner moves into the cursor's place: check it
                    // next.
                    reclaimed += self.release_owner(owner);
                }
                Presence::Alive => self.cursor += 1,
                Presence::Unknown(_) => {
                    self.stats.owner_check_errors += 1;
                    self.cursor += 1;
                }
            }
        }
        reclaimed
    }

    /// The owners holding ports now, for a liveness sweep outside the lock.
    pub fn owners(&self) -> Vec<Owner> {
        self.owners.iter().map(|e| e.owner).collect()
    }

    /// Takes back every port of `owner` (gone). Returns how many.
    pub fn release_owner(&mut self, owner: Owner) -> usize {
        let Some(slot) = self.index.remove(&owner) else {
            return 0;
        };
        let entry = self.owners.swap_remove(slot as usize);
        if let Some(moved) = self.owners.get(slot as usize) {
            self.index.insert(moved.owner, slot);
            for &p in &moved.ports {
                self.slot_of[p as usize] = slot;
            }
        }
        for &p in &entry.ports {
            self.slot_of[p as usize] = FREE;
            self.free.push_back(p);
        }
        self.stats.reclaimed += entry.ports.len() as u64;
        entry.ports.len()
    }

    /// Gives one port back to the free queue (an allocation that could not
    /// be completed). False if `owner` did not hold it.
    pub fn release_port(&mut self, port: u16, owner: Owner) -> bool {
        let Some(&slot) = self.index.get(&owner) else {
            return false;
        };
        let ports = &mut self.owners[slot as usize].ports;
        let Some(i) = ports.iter().position(|&p| p == port) else {
            return false;
        };
        ports.swap_remove(i);
        if ports.is_empty() {
            // Drop the empty owner entry the same way a reclaim does.
            self.release_owner(owner);
        }
        // It was held, so it is not in the queue.
        self.slot_of[port as usize] = FREE;
        self.free.push_back(port);
        self.stats.allocations = self.stats.allocations.saturating_sub(1);
        true
    }

    /// Marks `port` held by `owner` without probing (restoring saved state).
    /// False when the port is not in the pool or someone holds it already.
    pub fn restore(&mut self, port: u16, owner: Owner) -> bool {
        if self.slot_of[port as usize] != FREE {
            return false;
        }
        if let Some(i) = self.free.iter().position(|&p| p == port) {
            self.free.remove(i);
        }
        self.assign(port, owner);
        true
    }

    /// Every held port with its owner.
    pub fn held(&self) -> impl Iterator<Item = (u16, Owner)> + '_ {
        self.owners
            .iter()
            .flat_map(|e| e.ports.iter().map(move |&p| (p, e.owner)))
    }

    /// The owner of `port`, if held.
    #[cfg(feature = "testkit")]
    pub fn owner_of(&self, port: u16) -> Option<Owner> {
        match self.slot_of[port as usize] {
            FREE | UNMANAGED | PROBING => None,
            slot => self.owners.get(slot as usize).map(|e| e.owner),
        }
    }

    /// Whether `port` is in the pool.
    pub fn manages(&self, port: u16) -> bool {
        self.slot_of[port as usize] != UNMANAGED
    }

    /// The counters, with the current sizes filled in.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            free: self.free.len() as u64,
            held: self.owners.iter().map(|e| e.ports.len() as u64).sum(),
            probing: self.probing.len() as u64,
            owners: self.owners.len() as u64,
            ..self.stats
        }
    }
}
