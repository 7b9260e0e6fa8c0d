//! One worker thread's event loop: epoll reactor, connection slab, timer heap, inbox.
//!
//! Loop turn: `epoll_wait` (timeout = next timer, or 0 when connections are queued) ->
//! readiness events drive their connections -> inbox drained (new connections, `spawn_cpu`
//! results) -> due timers fired -> queued connections (deferred closures, drive budget
//! exhausted) run. Only a wait that may block is announced to senders (`Waker::sleeping`,
//! then the inbox is checked once more): work handed to an awake worker costs no eventfd
//! write. After each callback a connection is "settled": removed if closed or
//! idle, queued if it has deferred work, its timer armed if it waits with a timeout.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::epoll::EpollEvent;

use crate::conn::{Conn, InitFn, Msg, WorkerShared};
use crate::gate::ConnGate;
use crate::listener::Stream;
use crate::reactor::{HUP_FLAGS, READ_FLAGS, Reactor, WAKER_KEY, WRITE_FLAGS};

/// One worker thread's state.
pub(crate) struct Worker {
    shared: Arc<WorkerShared>,
    gate: Arc<ConnGate>,
    rx: Receiver<Msg>,
    reactor: Reactor,
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    generation: u32,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    ready: VecDeque<u64>,
    now: Instant,
    spin: crate::spin::IdleSpin,
}

fn slot_of(key: u64) -> usize {
    (key & 0xffff_ffff) as usize
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<WorkerShared>,
        gate: Arc<ConnGate>,
        rx: Receiver<Msg>,
        reactor: Reactor,
    ) -> Worker {
        // On one CPU only worker 0 spins (`spin.rs`).
        let spin = crate::spin::IdleSpin::new(shared.index);
        Worker {
            shared,
            gate,
            rx,
            reactor,
            slots: Vec::new(),
            free: Vec::new(),
            generation: 0,
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
            now: Instant::now(),
            spin,
        }
    }

    pub(crate) fn run(mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            // Idle (nothing queued, no message, no timer due): yield and poll a few rounds
            // before blocking (`spin.rs`).
            let idle = self.ready.is_empty()
                && self.rx.is_empty()
                && self
                    .timers
                    .peek()
                    .is_none_or(|Reverse((at, _))| *at > Instant::now());
            let mut n = if idle { self.spin_poll(&mut events) } else { 0 };
            if n == 0 {
                // After the spin: it may have taken a while (a yield can give away a slice).
                let mut timeout = if !self.ready.is_empty() {
                    Some(Duration::ZERO)
                } else {
                    self.timers
                        .peek()
                        .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()))
                };
                if timeout != Some(Duration::ZERO) {
                    self.shared.waker.sleeping();
                    if self.rx.is_empty() {
                        // About to block: waiting for events is not hanging.
                        self.shared.tick.idle();
                    } else {
                        // Sent before the announcement: its sender did not wake us.
                        timeout = Some(Duration::ZERO);
                    }
                }
                n = match self.reactor.wait(&mut events, timeout) {
                    Ok(n) => n,
                    Err(e) => {
                        log::error!("worker {}: epoll_wait failed: {e}", self.shared.index);
                        std::thread::sleep(Duration::from_millis(10));
                        0
                    }
                };
            }
            self.shared.waker.awake();
            self.now = Instant::now();
            self.shared.tick.busy(self.now);
            for ev in &events[..n] {
                let key = ev.data();
                if key != WAKER_KEY {
                    let flags = ev.events();
                    self.with_conn(key, |c| {
                        c.readable |= flags.intersects(READ_FLAGS);
                        c.writable |= flags.intersects(WRITE_FLAGS);
                        c.hup |= flags.intersects(HUP_FLAGS);
                        c.drive();
                    });
                }
            }
            while let Ok(msg) = self.rx.try_recv() {
                if !self.on_msg(msg) {
                    self.close_all();
                    return;
                }
            }
            self.fire_timers();
            self.run_ready();
        }
    }

    /// Idle: up to `spin.rounds()` rounds of `sched_yield` + `epoll_wait(0)` before blocking
    /// ([`IdleSpin`](crate::spin::IdleSpin)); returns the events found (0: block).
    fn spin_poll(&mut self, events: &mut [EpollEvent]) -> usize {
        if self.spin.rounds() == 0 {
            return 0;
        }
        // Waiting for events, not hanging; and awake for `pick` (a yield may give away a whole
        // time slice, which must not make the turn look stuck). The next turn stamps it busy.
        self.shared.tick.idle();
        let mut n = 0;
        let (reactor, rx) = (&self.reactor, &self.rx);
        self.spin.spin(|| {
            n = reactor.wait(events, Some(Duration::ZERO)).unwrap_or(0);
            n > 0 || !rx.is_empty()
        });
        n
    }

    fn on_msg(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Assign {
                stream,
                init,
                counted,
            } => self.add(stream, init, counted),
            Msg::Cpu { key, f } => self.with_conn(key, |c| {
                c.cpu_jobs = c.cpu_jobs.saturating_sub(1);
                match f {
                    Some(f) => {
                        f(c);
                        c.drive();
                    }
                    None => c.close(),
                }
            }),
            Msg::CloseFifos => {
                let fifos: Vec<u64> = self
                    .slots
                    .iter()
                    .flatten()
                    .filter(|c| matches!(c.stream(), Stream::Fifo(_)))
                    .map(|c| c.key)
                    .collect();
                for key in fifos {
                    self.with_conn(key, Conn::close);
                }
            }
            Msg::Shutdown => return false,
        }
        true
    }

    fn add(&mut self, stream: Stream, init: InitFn, counted: bool) {
        self.generation = self.generation.wrapping_add(1).max(1);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let key = (u64::from(self.generation) << 32) | u64::from(slot);
        if let Err(e) = self.reactor.add(&stream, key) {
            log::warn!(
                "worker {}: epoll add {}: {e}; closing it",
                self.shared.index,
                stream.describe_peer()
            );
            self.free.push(slot);
            self.shared.load.fetch_sub(1, Ordering::Relaxed);
            if counted {
                self.gate.release_at(self.now);
            }
            return;
        }
        self.slots[slot as usize] = Some(Conn::new(stream, key, Arc::clone(&self.shared), counted));
        self.with_conn(key, |c| {
            init(c);
            c.drive();
        });
    }

    /// Runs `f` on the connection `key` (if it still exists), catching panics, then settles
    /// it: closes it if closed or idle, queues it if it has deferred work, arms its timer.
    fn with_conn(&mut self, key: u64, f: impl FnOnce(&mut Conn)) {
        let Some(Some(conn)) = self.slots.get_mut(slot_of(key)) else {
            return;
        };
        if conn.key != key {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| f(conn))).is_err() {
            log::error!(
                "worker {}: connection callback panicked; closing it",
                self.shared.index
            );
            conn.close();
        }
        if !conn.is_closed() && conn.is_idle() {
            conn.close();
        }
        if conn.is_closed() {
            self.remove(key);
            return;
        }
        if (conn.more || !conn.deferred.is_empty()) && !conn.queued {
            conn.queued = true;
            self.ready.push_back(key);
        }
        if let Some(at) = conn.arm(self.now) {
            self.timers.push(Reverse((at, key)));
        }
    }

    fn remove(&mut self, key: u64) {
        let slot = slot_of(key);
        let Some(mut conn) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        conn.final_write();
        if let Err(e) = self.reactor.delete(conn.stream()) {
            log::debug!("worker {}: epoll delete: {e}", self.shared.index);
        }
        let counted = conn.counted;
        drop(conn);
        self.free.push(slot as u32);
        self.shared.load.fetch_sub(1, Ordering::Relaxed);
        if counted {
            self.gate.release_at(self.now);
        }
    }

    fn fire_timers(&mut self) {
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            let Some(&Reverse((at, key))) = self.timers.peek() else {
                break;
            };
            if at > self.now {
                break;
            }
            self.timers.pop();
            let now = self.now;
            self.with_conn(key, |c| {
                if c.timer_at == Some(at) {
                    c.timer_at = None;
                    c.fire_timeouts(now);
                    c.drive();
                }
            });
        }
        self.compact_timers();
    }

    /// Entries of closed connections, or superseded by an earlier deadline, stay in the heap
    /// until due; when they outnumber live connections, rebuild the heap from the live ones.
    fn compact_timers(&mut self) {
        let live = self.slots.len() - self.free.len();
        if self.timers.len() > 1024 && self.timers.len() > 4 * live {
            self.timers = self
                .slots
                .iter()
                .flatten()
                .filter_map(|c| c.timer_at.map(|at| Reverse((at, c.key))))
                .collect();
        }
    }

    fn run_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            self.with_conn(key, |c| {
                c.queued = false;
                c.more = false;
                for f in std::mem::take(&mut c.deferred) {
                    if c.is_closed() {
                        break;
                    }
                    f(c);
                }
                c.drive();
            });
        }
    }

    fn close_all(&mut self) {
        let keys: Vec<u64> = self.slots.iter().flatten().map(|c| c.key).collect();
        for key in keys {
            if let Some(Some(c)) = self.slots.get_mut(slot_of(key)) {
                c.close();
            }
            self.remove(key);
        }
        log::debug!("worker {}: shut down", self.shared.index);
    }
}
