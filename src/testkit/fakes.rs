//! The one fake of each seam: a [`Prober`] and a [`ProcessTable`] whose
//! answers a test sets. Tests, benches and the fuzz checkers all use these.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::probe::{Prober, Protocol};
use crate::server::process::ProcessTable;
use crate::sync::lock;

/// What "the kernel" offers for a bind of port 0.
#[derive(Debug, Default)]
enum Kernel {
    /// Nothing.
    #[default]
    Nothing,
    /// These ports, each once, then nothing.
    Script(VecDeque<u16>),
    /// These ports, round and round.
    Cycle(VecDeque<u16>),
    /// This port, every time.
    Always(u16),
}

/// A prober whose answers a test sets: every port is free unless marked
/// busy, "the kernel" offers what the test says, and every question is
/// recorded.
#[derive(Debug, Default)]
pub struct FakeProber {
    busy: Mutex<HashSet<(u16, Protocol)>>,
    all_busy: AtomicBool,
    recording: AtomicBool,
    kernel: Mutex<Kernel>,
    asked: Mutex<Vec<(u16, Protocol)>>,
    kernel_asked: Mutex<Vec<Protocol>>,
}

impl FakeProber {
    /// Every port free, no kernel port.
    pub fn new() -> Self {
        FakeProber::default()
    }

    /// The kernel offers `ports`, each once, then none.
    pub fn offering(self, ports: impl IntoIterator<Item = u16>) -> Self {
        *lock(&self.kernel) = Kernel::Script(ports.into_iter().collect());
        self
    }

    /// The kernel offers `ports` in a cycle.
    pub fn cycling(self, ports: impl IntoIterator<Item = u16>) -> Self {
        *lock(&self.kernel) = Kernel::Cycle(ports.into_iter().collect());
        self
    }

    /// The kernel offers `port` every time (change it with
    /// [`FakeProber::offer`]).
    pub fn always_offering(self, port: u16) -> Self {
        self.offer(port);
        self
    }

    /// From now on the kernel offers `port` every time.
    pub fn offer(&self, port: u16) {
        *lock(&self.kernel) = Kernel::Always(port);
    }

    /// Records every question, for [`FakeProber::asked`] and
    /// [`FakeProber::kernel_asked`] (default: not, so a bench or a long
    /// fuzz run does not grow a list).
    pub fn recording(self) -> Self {
        self.recording.store(true, Ordering::Relaxed);
        self
    }

    /// Marks `port` busy on `protocol`.
    pub fn busy_on(self, port: u16, protocol: Protocol) -> Self {
        lock(&self.busy).insert((port, protocol));
        self
    }

    /// Every port busy (`true`), or back to the marks (`false`).
    pub fn all_busy(self, yes: bool) -> Self {
        self.all_busy.store(yes, Ordering::Relaxed);
        self
    }

    /// Marks `port` busy on TCP and UDP (`true`) or free (`false`).
    pub fn set_busy(&self, port: u16, busy: bool) {
        let mut set = lock(&self.busy);
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            if busy {
                set.insert((port, protocol));
            } else {
                set.remove(&(port, protocol));
            }
        }
    }

    /// Whether `port` is busy on any protocol.
    pub fn is_busy(&self, port: u16) -> bool {
        self.all_busy.load(Ordering::Relaxed)
            || [Protocol::Tcp, Protocol::Udp]
                .iter()
                .any(|&p| lock(&self.busy).contains(&(port, p)))
    }

    /// Every `is_free` question so far.
    pub fn asked(&self) -> Vec<(u16, Protocol)> {
        lock(&self.asked).clone()
    }

    /// How many scripted kernel ports are left (see
    /// [`FakeProber::offering`]).
    pub fn kernel_left(&self) -> usize {
        match &*lock(&self.kernel) {
            Kernel::Script(q) => q.len(),
            _ => 0,
        }
    }

    /// Every `kernel_port` question so far.
    pub fn kernel_asked(&self) -> Vec<Protocol> {
        lock(&self.kernel_asked).clone()
    }
}

impl Prober for FakeProber {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.asked).push((port, protocol));
        }
        !self.all_busy.load(Ordering::Relaxed) && !lock(&self.busy).contains(&(port, protocol))
    }

    fn kernel_port(&self, protocol: Protocol) -> Option<u16> {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.kernel_asked).push(protocol);
        }
        match &mut *lock(&self.kernel) {
            Kernel::Nothing => None,
            Kernel::Script(q) => q.pop_front(),
            Kernel::Cycle(q) => {
                let port = q.pop_front()?;
                q.push_back(port);
                Some(port)
            }
            Kernel::Always(port) => Some(*port),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    started: HashMap<u32, u64>,
    /// Every pid not ended runs, with this start time.
    everyone: Option<u64>,
    ended: HashSet<u32>,
}

/// A process table a test writes: pid -> start time; optionally every pid
/// runs; and it can be made to fail as `/proc` does when the server is out
/// of file descriptors.
#[derive(Debug, Default)]
pub struct FakeProcesses {
    table: Mutex<Table>,
    failing: AtomicBool,
}

impl FakeProcesses {
    /// No process runs.
    pub fn new() -> Self {
        FakeProcesses::default()
    }

    /// Every pid runs with `start_time` until ended.
    pub fn everyone(start_time: u64) -> Self {
        let table = FakeProcesses::default();
        lock(&table.table).everyone = Some(start_time);
        table
    }

    /// Starts (or restarts, with a new start time) process `pid`.
    pub fn start(&self, pid: u32, start_time: u64) {
        let mut t = lock(&self.table);
        t.started.insert(pid, start_time);
        t.ended.remove(&pid);
    }

    /// Ends process `pid`.
    pub fn end(&self, pid: u32) {
        let mut t = lock(&self.table);
        t.started.remove(&pid);
        t.ended.insert(pid);
    }

    /// Every question fails with EMFILE (`true`) or is answered again.
    pub fn set_failing(&self, yes: bool) {
        self.failing.store(yes, Ordering::Relaxed);
    }

    /// Whether every question fails.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// What the table says, without the failure mode.
    pub fn lookup(&self, pid: u32) -> Option<u64> {
        let t = lock(&self.table);
        match t.started.get(&pid) {
            Some(&start_time) => Some(start_time),
            None if t.ended.contains(&pid) => None,
            None => t.everyone,
        }
    }
}

/// Linux's "too many open files".
const EMFILE: i32 = 24;

impl ProcessTable for FakeProcesses {
    fn start_time(&self, pid: u32) -> io::Result<Option<u64>> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(EMFILE));
        }
        Ok(self.lookup(pid))
    }
}
