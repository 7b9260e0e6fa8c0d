//! One scheduler worker thread (layer 5, with the scheduler): the loop that starts and resumes
//! coroutines (through [`Coros`]), runs their timers and reactor, and sleeps in its poller
//! when idle.
//!
//! Loop: drain the inbox (wakes from other threads) and dropped I/O sources, fire due timers,
//! run up to [`BATCH`] coroutines, then poll for I/O (one `epoll_wait`) — without blocking if
//! work remains, else blocking until the next timer after announcing sleep
//! (`WorkerShared::sleeping`). Each turn stamps the worker's hang-detection tick; blocking in
//! the poller marks it idle.

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker as Deque};
use nix::sys::epoll::EpollEvent;
use zmaster_pool::spin::IdleSpin;

use super::context::{self, Fresh, READY, Shared};
use super::coros::{Coros, Queues, bump};
use super::overflow;
use super::reactor;
use super::runq::{self, Next};
use super::task;

/// Coroutines run between two checks of the inbox, timers and shutdown flag.
const BATCH: usize = 128;

pub(crate) struct Worker {
    q: Queues,
    coros: Coros,
    events: Vec<EpollEvent>,
    /// Yield-and-poll rounds before sleeping (`zmaster_pool::spin`: on one CPU only worker 0 spins).
    spin: IdleSpin,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, index: usize, fresh: Deque<Fresh>) -> Worker {
        let pool_stacks = shared.pool_stacks;
        Worker {
            q: Queues {
                me: shared.workers[index].clone(),
                shared,
                index,
                fresh,
                placed: VecDeque::new(),
            },
            coros: Coros::new(pool_stacks),
            events: vec![EpollEvent::empty(); reactor::EVENTS],
            spin: IdleSpin::new(index),
        }
    }

    /// Runs the worker loop on this thread until shutdown.
    fn run(&mut self) {
        context::set_worker(Some((&self.q.me, &self.q.shared)));
        let _alt = overflow::AltStack::install()
            .map_err(|e| log::warn!("coroutine worker={} no signal stack: {e}", self.q.index))
            .ok();
        self.coros.claim_guard_slot();
        while !self.q.shared.shutdown.load(Ordering::Acquire) {
            // Hang detection: one clock read per loop turn; a coroutine that never yields
            // keeps the turn from ending.
            self.q.me.tick.busy(Instant::now());
            self.drain_remote();
            self.coros.fire_timers();
            let ran = self.run_batch();
            let more = ran == BATCH || !READY.with_borrow(|q| q.is_empty());
            if more {
                // Still busy: check for I/O without blocking (one `epoll_wait`) so that
                // coroutines parked on sockets join the ready ones.
                self.poll(Some(Duration::ZERO));
            } else if !self.spin_poll() {
                self.sleep();
            }
        }
        self.teardown();
        self.coros.release_guard_slot();
        context::set_worker(None);
    }

    /// Moves wakes from other threads into the ready queue and placed coroutines into the
    /// local queue; forgets dropped I/O sources.
    fn drain_remote(&mut self) {
        loop {
            match self.q.me.placed.steal() {
                Steal::Success(f) => self.q.placed.push_back(f),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.q.me.inbox.steal() {
                Steal::Success(slot) => READY.with_borrow_mut(|q| q.push(slot)),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.q.me.dereg.steal() {
                Steal::Success(key) => reactor::forget(key),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
    }

    fn run_batch(&mut self) -> usize {
        for n in 0..BATCH {
            let (fresh, shared, index) = (&self.q.fresh, &self.q.shared, self.q.index);
            let placed = &mut self.q.placed;
            let mut local = || {
                (placed.pop_front().map(|f| (f, true))).or_else(|| fresh.pop().map(|f| (f, false)))
            };
            let mut remote = || {
                let found = runq::find_remote(fresh, &shared.injector, &shared.stealers, index)
                    .map(|f| (f, false));
                // Took remote work and more is waiting: get another sleeper going too.
                if found.is_some()
                    && runq::work_available(&shared.injector, &shared.stealers, index)
                {
                    shared.wake_one();
                }
                found
            };
            match READY.with_borrow_mut(|q| q.next(&mut local, &mut remote)) {
                Some(Next::Resume(slot)) => self.coros.resume(slot, None, &self.q),
                Some(Next::Start((f, placed))) => self.start(f, placed),
                None => return n,
            }
        }
        BATCH
    }

    /// Starts a new coroutine here, or places it on a clearly less loaded worker (unless it
    /// was `placed` here already). Not on one CPU: another worker adds no CPU there, only a
    /// sleep and a wake-up per coroutine (issue 15, connect load, coroutine 1×2 on one CPU:
    /// 0.9–1.4 context switches per connection when placing, against 0.4); a worker stuck in
    /// a coroutine does not take new ones, and `wake_one` gets another one going for them.
    fn start(&mut self, fresh: Fresh, placed: bool) {
        if !placed {
            let workers = &self.q.shared.workers;
            let loads = workers.iter().map(|w| w.load.load(Ordering::Relaxed));
            if workers.len() > 1
                && !self.q.shared.one_cpu
                && let Some(to) = runq::place(loads, self.q.index)
            {
                let w = &workers[to];
                w.load.fetch_add(1, Ordering::Relaxed);
                w.placed.push(fresh);
                w.unpark();
                return;
            }
            self.q.me.load.fetch_add(1, Ordering::Relaxed);
        }
        self.coros.start(fresh, &self.q);
    }

    /// Polls for I/O readiness and wakes the coroutines waiting for it.
    fn poll(&mut self, timeout: Option<Duration>) {
        match self.q.me.poller.wait(&mut self.events, timeout) {
            Ok(n) => reactor::dispatch(&self.events[..n]),
            Err(e) => {
                log::error!("coroutine worker={} poll failed: {e}", self.q.index);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Before sleeping: up to `spin.rounds()` times, give the CPU to another runnable thread
    /// (`sched_yield`, typically a peer about to send the next request) and poll without
    /// blocking. Returns whether work arrived. A sleep and the wake-up that ends it cost tens of
    /// microseconds on a VM; this costs two cheap syscalls per round when nothing else runs,
    /// so after a spin that found nothing the next one is short ([`IdleSpin::found`]).
    ///
    /// While it spins the worker counts in `Shared::spinning` and also looks for stealable
    /// work (new coroutines), for which `wake_one` then wakes nobody on one CPU.
    fn spin_poll(&mut self) -> bool {
        let mut spin = self.spin;
        if spin.rounds() == 0 {
            return false;
        }
        // Counted only where `wake_one` reads it (one CPU): no shared RMWs per spin elsewhere.
        let shared = self.q.shared.one_cpu.then(|| Arc::clone(&self.q.shared));
        let spinning = shared.as_ref().map(|s| Spinning::enter(&s.spinning));
        let found = spin.spin(|| {
            self.poll(Some(Duration::ZERO));
            !READY.with_borrow(|q| q.is_empty())
                || !self.q.me.inbox.is_empty()
                || !self.q.me.placed.is_empty()
                || runq::work_available(
                    &self.q.shared.injector,
                    &self.q.shared.stealers,
                    self.q.index,
                )
        });
        // Before `sleep` announces the sleep and re-checks for work (see `Shared::wake_one`).
        drop(spinning);
        self.spin = spin;
        found
    }

    /// Announces sleep, re-checks for work, then blocks in the poller until the next timer.
    fn sleep(&mut self) {
        self.q.me.sleeping.store(true, Ordering::SeqCst);
        self.q.shared.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let busy = !self.q.me.inbox.is_empty()
            || !self.q.fresh.is_empty()
            || !self.q.me.placed.is_empty()
            || runq::work_available(
                &self.q.shared.injector,
                &self.q.shared.stealers,
                self.q.index,
            )
            || self.q.shared.shutdown.load(Ordering::SeqCst);
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.coros
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        if timeout != Some(Duration::ZERO) {
            // Asleep in the poller is not hung, however long it lasts.
            self.q.me.tick.idle();
        }
        self.poll(timeout);
        self.q.me.sleeping.store(false, Ordering::SeqCst);
        self.q.shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        if self.q.shared.waking.load(Ordering::Relaxed) {
            // Let the next `wake_one` notify again; our next search sees what it published.
            self.q.shared.waking.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
    }

    /// Drops every coroutine this worker still holds (shutdown).
    fn teardown(&mut self) {
        let mut dropped = 0usize;
        while let Some(f) = self.q.fresh.pop() {
            task::drop_unstarted(f.f);
            dropped += 1;
        }
        for f in self.q.placed.drain(..) {
            task::drop_unstarted(f.f);
            dropped += 1;
        }
        loop {
            match self.q.me.placed.steal() {
                Steal::Success(f) => {
                    task::drop_unstarted(f.f);
                    dropped += 1;
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.q.shared.injector.steal() {
                Steal::Success(f) => {
                    task::drop_unstarted(f.f);
                    dropped += 1;
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        READY.with_borrow_mut(|q| q.clear());
        dropped += self.coros.teardown();
        READY.with_borrow_mut(|q| q.clear());
        bump(&self.q.me.finished, dropped);
        reactor::forget_all();
        log::debug!(
            "coroutine worker={} stopped dropped={dropped}",
            self.q.index
        );
    }
}

/// Counts a worker in `Shared::spinning` until dropped.
struct Spinning<'a>(&'a AtomicUsize);

impl<'a> Spinning<'a> {
    fn enter(count: &'a AtomicUsize) -> Spinning<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Spinning(count)
    }
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The body of worker thread `index`.
///
/// A panic on a worker outside any coroutine (the scheduler's own code, or user code it calls
/// such as a logger) would leave the coroutines started or placed there unable to ever run
/// while `place` keeps sending it more and softstop waits for them: the process aborts with a
/// message instead. The worker is not dropped then: its coroutines' stacks are in an unknown
/// state.
pub(crate) fn run(shared: Arc<Shared>, index: usize, fresh: Deque<Fresh>) {
    let mut worker = std::mem::ManuallyDrop::new(Worker::new(shared, index, fresh));
    match panic::catch_unwind(AssertUnwindSafe(|| worker.run())) {
        Ok(()) => drop(std::mem::ManuallyDrop::into_inner(worker)),
        Err(p) => {
            let msg = panic::catch_unwind(AssertUnwindSafe(|| task::panic_message(&*p)))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "coroutine worker {index} panicked outside a coroutine: {msg}; aborting, \
                 the coroutines on it could never run"
            );
            std::process::abort();
        }
    }
}
