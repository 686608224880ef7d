//! The pool's invariants, checked by the property test and the fuzzer
//! after every step.

use std::collections::HashMap;

use crate::server::pool::{Pool, FREE, PROBING, UNMANAGED};

impl Pool {
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
