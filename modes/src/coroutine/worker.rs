//! One scheduler worker thread: starts and resumes coroutines, runs their timers and reactor,
//! and sleeps in its poller when idle.
//!
//! Loop: drain the inbox (wakes from other threads) and dropped I/O sources, fire due timers,
//! run up to [`BATCH`] coroutines, then poll for I/O (one `epoll_wait`) — without blocking if
//! work remains, else blocking until the next timer after announcing sleep
//! (`WorkerShared::sleeping`).

use std::collections::VecDeque;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use crossbeam_deque::{Steal, Worker as Deque};
use nix::sys::epoll::EpollEvent;

use super::reactor;
use super::runq::{self, Next};
use super::sched::{self, READY, Shared, WorkerShared};
use super::stack::{self, StackPool};
use super::state::TaskState;
use super::sys;
use super::task::{self, Fresh, Input, Reason, Task};
use super::timer::{TimerKey, Timers};

/// Coroutines run between two checks of the inbox, timers and shutdown flag.
const BATCH: usize = 128;

/// A coroutine that yields while nothing else is runnable on its worker is resumed directly
/// up to this many times before going through the run queue.
const DIRECT_YIELDS: u32 = 16;

/// Yield-and-poll rounds of an idle worker before it blocks (see `Worker::spin_poll`).
const SPIN_POLLS: u32 = 3;

/// Coroutine ids are reserved from this counter in blocks, per worker.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const ID_BLOCK: u64 = 1024;

type Coro = Coroutine<Input, Reason, ()>;

/// A started coroutine owned by its worker.
struct Entry {
    coro: Coro,
    task: Arc<Task>,
    timer: Option<TimerKey>,
    guard: usize,
    stack_size: usize,
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    me: Arc<WorkerShared>,
    index: usize,
    fresh: Deque<Fresh>,
    /// New coroutines placed here by other workers (from `WorkerShared::placed`), started
    /// before the stealable ones and never stolen.
    placed: VecDeque<Fresh>,
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    timers: Timers<u32>,
    stacks: StackPool,
    events: Vec<EpollEvent>,
    guard_slot: Option<&'static sys::GuardSlot>,
    /// Yield-and-poll rounds before sleeping ([`SPIN_POLLS`], 0 on a single CPU).
    spin_polls: u32,
    next_id: u64,
    id_end: u64,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, index: usize, fresh: Deque<Fresh>) -> Worker {
        Worker {
            me: shared.workers[index].clone(),
            shared,
            index,
            fresh,
            placed: VecDeque::new(),
            slab: Vec::new(),
            free: Vec::new(),
            timers: Timers::new(),
            stacks: StackPool::new(),
            events: vec![EpollEvent::empty(); reactor::EVENTS],
            guard_slot: None,
            // Counts the CPUs this thread may run on: with one, nobody can make progress
            // while this worker spins, so it sleeps at once.
            spin_polls: match std::thread::available_parallelism() {
                Ok(n) if n.get() > 1 => SPIN_POLLS,
                _ => 0,
            },
            next_id: 0,
            id_end: 0,
        }
    }

    /// Runs the worker loop on this thread until shutdown.
    fn run(&mut self) {
        sched::set_worker(Some((&self.me, &self.shared)));
        let _alt = sys::AltStack::install()
            .map_err(|e| log::warn!("coroutine worker={} no signal stack: {e}", self.index))
            .ok();
        self.guard_slot = Some(sys::claim_guard_slot());
        while !self.shared.shutdown.load(Ordering::Acquire) {
            self.drain_remote();
            self.fire_timers();
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
        if let Some(slot) = self.guard_slot.take() {
            sys::release_guard_slot(slot);
        }
        sched::set_worker(None);
    }

    /// Moves wakes from other threads into the ready queue and placed coroutines into the
    /// local queue; forgets dropped I/O sources.
    fn drain_remote(&mut self) {
        loop {
            match self.me.placed.steal() {
                Steal::Success(f) => self.placed.push_back(f),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.me.inbox.steal() {
                Steal::Success(slot) => READY.with_borrow_mut(|q| q.push(slot)),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.me.dereg.steal() {
                Steal::Success(key) => reactor::forget(key),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
    }

    fn fire_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(slot) = self.timers.pop_expired(now) {
            if let Some(Some(e)) = self.slab.get_mut(slot as usize) {
                e.timer = None;
                e.task.wake();
            }
        }
    }

    fn run_batch(&mut self) -> usize {
        for n in 0..BATCH {
            let (fresh, shared, index) = (&self.fresh, &self.shared, self.index);
            let placed = &mut self.placed;
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
                Some(Next::Resume(slot)) => self.resume(slot, None),
                Some(Next::Start((f, placed))) => self.start(f, placed),
                None => return n,
            }
        }
        BATCH
    }

    /// Starts a new coroutine here, or places it on a clearly less loaded worker (unless it
    /// was `placed` here already).
    fn start(&mut self, fresh: Fresh, placed: bool) {
        if !placed {
            let workers = &self.shared.workers;
            let loads = workers.iter().map(|w| w.load.load(Ordering::Relaxed));
            if workers.len() > 1
                && let Some(to) = runq::place(loads, self.index)
            {
                let w = &workers[to];
                w.load.fetch_add(1, Ordering::Relaxed);
                w.placed.push(fresh);
                w.unpark();
                return;
            }
            self.me.load.fetch_add(1, Ordering::Relaxed);
        }
        let size = match fresh.stack {
            0 => self.shared.stack_size,
            // Validated and rounded where it was requested.
            s => s,
        };
        let stack = match self.stacks.get(size) {
            Ok(s) => s,
            Err(e) => {
                self.me.load.fetch_sub(1, Ordering::Relaxed);
                bump(&self.me.finished, 1);
                task::drop_unstarted(fresh.f);
                log::error!(
                    "coroutine stack allocation failed size={size}: {e}; coroutine dropped"
                );
                return;
            }
        };
        if self.next_id == self.id_end {
            self.next_id = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.id_end = self.next_id + ID_BLOCK;
        }
        let id = self.next_id;
        self.next_id += 1;
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slab.push(None);
                (self.slab.len() - 1) as u32
            }
        };
        let task = Arc::new(Task {
            id,
            state: TaskState::new_running(),
            home: self.me.clone(),
            slot,
        });
        let guard = stack::guard_start(&stack);
        let body_task = task.clone();
        let f = fresh.f;
        let coro = Coro::with_stack(stack, move |y: &Yielder<Input, Reason>, _: Input| {
            sys::run_body(y, body_task, move |task| task::run_guarded(task.id, f));
        });
        self.slab[slot as usize] = Some(Entry {
            coro,
            task,
            timer: None,
            guard,
            stack_size: size,
        });
        self.resume(slot, None);
    }

    fn resume(&mut self, slot: u32, mut input: Input) {
        // Borrow the fields separately so the entry stays in place (no move per switch).
        let Worker {
            shared,
            me,
            fresh,
            placed,
            slab,
            free,
            timers,
            stacks,
            guard_slot,
            ..
        } = self;
        let Some(Some(e)) = slab.get_mut(slot as usize) else {
            return;
        };
        if let Some(key) = e.timer.take() {
            timers.remove(key);
        }
        e.task.state.start_running();
        if let Some(g) = guard_slot {
            sys::set_running(g, e.task.id, e.guard, e.stack_size);
        }
        let mut direct = DIRECT_YIELDS;
        loop {
            let r = {
                let _clear = sys::ClearCurrent;
                e.coro.resume(input)
            };
            match r {
                CoroutineResult::Yield(Reason::Spawn(f)) => {
                    bump(&me.spawned, 1);
                    fresh.push(f);
                    // This worker is awake and will start it anyway: waking a sleeper is
                    // only for parallelism, so no fence is needed here.
                    if shared.sleepers.load(Ordering::Relaxed) > 0 {
                        shared.wake_one();
                    }
                    input = None;
                }
                CoroutineResult::Yield(Reason::Yield) => {
                    // Nothing else runnable here: resume it again directly, a bounded number
                    // of times (the outer loop must still get to timers, inbox and I/O).
                    if direct > 0
                        && fresh.is_empty()
                        && placed.is_empty()
                        && me.inbox.is_empty()
                        && READY.with_borrow(|q| q.is_empty())
                    {
                        direct -= 1;
                        input = None;
                        continue;
                    }
                    e.task.state.yielded();
                    READY.with_borrow_mut(|q| q.push(slot));
                    return;
                }
                CoroutineResult::Yield(Reason::Park(deadline)) => {
                    if e.task.state.park() {
                        if let Some(d) = deadline {
                            e.timer = Some(timers.insert(d, slot));
                        }
                    } else {
                        READY.with_borrow_mut(|q| q.push(slot));
                    }
                    return;
                }
                CoroutineResult::Return(()) => break,
            }
        }
        if let Some(e) = slab[slot as usize].take() {
            e.task.state.finish();
            stacks.put(e.stack_size, e.coro.into_stack());
            free.push(slot);
            me.load.fetch_sub(1, Ordering::Relaxed);
            bump(&me.finished, 1);
        }
    }

    /// Polls for I/O readiness and wakes the coroutines waiting for it.
    fn poll(&mut self, timeout: Option<Duration>) {
        if let Err(e) = self.me.poller.wait(&mut self.events, timeout) {
            log::error!("coroutine worker={} poll failed: {e}", self.index);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Before sleeping: up to `spin_polls` times, give the CPU to another runnable thread
    /// (`sched_yield`, typically a peer about to send the next request) and poll without
    /// blocking. Returns whether work arrived. A sleep and the wake-up that ends it cost tens of
    /// microseconds on a VM; this costs two cheap syscalls per round when nothing else runs.
    fn spin_poll(&mut self) -> bool {
        for _ in 0..self.spin_polls {
            std::thread::yield_now();
            self.poll(Some(Duration::ZERO));
            if !READY.with_borrow(|q| q.is_empty()) || !self.me.inbox.is_empty() {
                return true;
            }
        }
        false
    }

    /// Announces sleep, re-checks for work, then blocks in the poller until the next timer.
    fn sleep(&mut self) {
        self.me.sleeping.store(true, Ordering::SeqCst);
        self.shared.sleepers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let busy = !self.me.inbox.is_empty()
            || !self.fresh.is_empty()
            || !self.me.placed.is_empty()
            || runq::work_available(&self.shared.injector, &self.shared.stealers, self.index)
            || self.shared.shutdown.load(Ordering::SeqCst);
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        };
        self.poll(timeout);
        self.me.sleeping.store(false, Ordering::SeqCst);
        self.shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        if self.shared.waking.load(Ordering::Relaxed) {
            // Let the next `wake_one` notify again; our next search sees what it published.
            self.shared.waking.store(false, Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
    }

    /// Drops every coroutine this worker still holds (shutdown).
    fn teardown(&mut self) {
        let mut dropped = 0usize;
        while let Some(f) = self.fresh.pop() {
            task::drop_unstarted(f.f);
            dropped += 1;
        }
        for f in self.placed.drain(..) {
            task::drop_unstarted(f.f);
            dropped += 1;
        }
        loop {
            match self.me.placed.steal() {
                Steal::Success(f) => {
                    task::drop_unstarted(f.f);
                    dropped += 1;
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        loop {
            match self.shared.injector.steal() {
                Steal::Success(f) => {
                    task::drop_unstarted(f.f);
                    dropped += 1;
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        READY.with_borrow_mut(|q| q.clear());
        self.timers = Timers::new();
        for e in self.slab.drain(..).flatten() {
            e.task.state.finish();
            // Dropping the coroutine unwinds its stack, running its destructors here.
            drop(e);
            dropped += 1;
        }
        READY.with_borrow_mut(|q| q.clear());
        bump(&self.me.finished, dropped);
        reactor::forget_all();
        log::debug!("coroutine worker={} stopped dropped={dropped}", self.index);
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

/// Adds to a counter only this worker thread writes (no locked instruction needed).
fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Release);
}
