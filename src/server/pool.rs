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
use std::fmt;

use crate::probe::Prober;
use crate::server::process::ProcessTable;

/// At most this many owners are checked for liveness in one allocation
/// that finds no free port.
pub const OWNER_CHECKS_PER_REQUEST: usize = 2;
/// At most this many free ports are probed in one allocation: beyond it, a
/// pool full of ports busy outside the server says "no port" rather than
/// probing for seconds.
pub const MAX_PROBES_PER_REQUEST: usize = 64;

/// A process as the pool knows it: its pid and its start time, so a reused
/// pid is a different owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The process id.
    pub pid: u32,
    /// Its start time, as the process table reports it.
    pub start_time: u64,
}

/// Why a request got no port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// Pid 0 or negative.
    InvalidPid,
    /// Pid 1: the client was reparented to init and meant its parent.
    Init,
    /// Larger than any pid.
    PidOutOfRange,
    /// No process with that pid runs.
    NotRunning,
    /// The owner already holds its quota.
    Quota {
        /// How many ports it holds.
        held: usize,
    },
    /// Every port is held or in use outside the server.
    Exhausted,
    /// The allocation could not be recorded in the state file.
    NotPersisted,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::InvalidPid => f.write_str("invalid pid"),
            Denial::Init => f.write_str("pid 1 (init)"),
            Denial::PidOutOfRange => f.write_str("pid out of range"),
            Denial::NotRunning => f.write_str("no such process"),
            Denial::Quota { held } => write!(f, "quota reached ({held} ports held)"),
            Denial::Exhausted => f.write_str("all ports in use"),
            Denial::NotPersisted => f.write_str("state file write failed"),
        }
    }
}

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

    /// Hands a port to `owner`: the first free port the prober finds free
    /// on TCP and UDP. When none is free, checks a few owners and takes
    /// back the ports of dead ones first. The same steps as
    /// [`take_candidate`](Pool::take_candidate) and
    /// [`finish_candidate`](Pool::finish_candidate), which a server uses to
    /// probe without holding its lock.
    ///
    /// # Errors
    ///
    /// [`Denial::Quota`] or [`Denial::Exhausted`].
    pub fn allocate(
        &mut self,
        owner: Owner,
        prober: &dyn Prober,
        processes: &dyn ProcessTable,
    ) -> Result<u16, Denial> {
        let mut budget = 1;
        let mut tries = 0;
        loop {
            let port = self.take_candidate(owner, processes, tries == 0)?;
            if tries == 0 {
                budget = self.probe_budget();
            }
            if self.finish_candidate(port, owner, prober.is_port_free(port)) {
                return Ok(port);
            }
            tries += 1;
            if tries >= budget {
                self.deny_exhausted();
                return Err(Denial::Exhausted);
            }
        }
    }

    /// How many candidates one request may probe, asked right after its
    /// first [`take_candidate`](Pool::take_candidate) (which may have
    /// reclaimed ports): that one and every port then in the queue, up to
    /// [`MAX_PROBES_PER_REQUEST`].
    pub fn probe_budget(&self) -> usize {
        (self.free.len() + 1).min(MAX_PROBES_PER_REQUEST)
    }

    /// Takes the next free port out of the queue for `owner`, to be probed
    /// (possibly without the pool's lock held) and then given to
    /// [`finish_candidate`](Pool::finish_candidate). `first` marks the first
    /// candidate of a request. When the queue is empty, checks
    /// [`OWNER_CHECKS_PER_REQUEST`] owners and takes back dead ones' ports.
    ///
    /// # Errors
    ///
    /// [`Denial::Quota`] when the owner holds (or is being given) its quota,
    /// [`Denial::Exhausted`] when no port is free. Both are counted.
    pub fn take_candidate(
        &mut self,
        owner: Owner,
        processes: &dyn ProcessTable,
        first: bool,
    ) -> Result<u16, Denial> {
        if first {
            self.stats.checked_last = 0;
        }
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
                        self.deny_exhausted();
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

    /// Ends the probe of a port from [`take_candidate`](Pool::take_candidate):
    /// free, it becomes `owner`'s (true); busy outside the server, it goes to
    /// the back of the queue (false). False too for a port not in flight
    /// for `owner`, which is left alone.
    pub fn finish_candidate(&mut self, port: u16, owner: Owner, free: bool) -> bool {
        let Some(i) = self
            .probing
            .iter()
            .position(|&(p, o)| p == port && o == owner)
        else {
            return false;
        };
        self.probing.swap_remove(i);
        if free {
            self.assign(port, owner);
            self.stats.allocations += 1;
            true
        } else {
            self.stats.busy_skipped += 1;
            self.slot_of[port as usize] = FREE;
            self.free.push_back(port);
            false
        }
    }

    /// Counts a request denied because its probe budget ran out.
    pub fn deny_exhausted(&mut self) {
        self.stats.denied += 1;
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
            if processes.start_time(owner.pid) == Some(owner.start_time) {
                self.cursor += 1;
            } else {
                // The last owner moves into the cursor's place: check it next.
                reclaimed += self.release_owner(owner);
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

    /// Checks the pool's invariants: every managed port is free exactly once
    /// or held by exactly one owner, the index matches, no owner is empty.
    /// For tests and fuzzers: O(pool size).
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen: HashMap<u16, u32> = HashMap::with_capacity(self.managed.len());
        for &p in &self.free {
            if self.slot_of[p as usize] != FREE {
                return Err(format!(
                    "port {p} is queued free but its slot says otherwise"
                ));
            }
            *seen.entry(p).or_default() += 1;
        }
        for &(p, _) in &self.probing {
            if self.slot_of[p as usize] != PROBING {
                return Err(format!(
                    "port {p} is being probed but its slot says otherwise"
                ));
            }
            *seen.entry(p).or_default() += 1;
        }
        for (slot, entry) in self.owners.iter().enumerate() {
            if entry.ports.is_empty() {
                return Err(format!("owner {:?} holds no port", entry.owner));
            }
            if self.index.get(&entry.owner) != Some(&(slot as u32)) {
                return Err(format!("owner {:?} is not indexed at {slot}", entry.owner));
            }
            for &p in &entry.ports {
                if self.slot_of[p as usize] != slot as u32 {
                    return Err(format!(
                        "port {p} held by {:?} points elsewhere",
                        entry.owner
                    ));
                }
                *seen.entry(p).or_default() += 1;
            }
        }
        if self.index.len() != self.owners.len() {
            return Err("index and owner list differ in size".to_string());
        }
        // Free and held ports all have managed slots (checked above), so
        // every port is accounted for exactly once when each managed port
        // was seen once and nothing else was seen.
        for &p in &self.managed {
            if self.slot_of[p as usize] == UNMANAGED {
                return Err(format!("managed port {p} has an unmanaged slot"));
            }
            let n = seen.get(&p).copied().unwrap_or(0);
            if n != 1 {
                return Err(format!("port {p} is accounted for {n} times"));
            }
        }
        if seen.len() != self.managed.len() {
            return Err("a port outside the pool is in use by the pool".to_string());
        }
        let s = self.stats();
        if self.managed.len() as u64 != s.managed || s.free + s.held + s.probing != s.managed {
            return Err(format!(
                "counts do not add up: managed {}, stats {} free + {} held + {} probing",
                self.managed.len(),
                s.free,
                s.held,
                s.probing
            ));
        }
        Ok(())
    }
}
