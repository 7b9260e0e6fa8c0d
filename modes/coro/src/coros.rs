//! The coroutines one worker owns (layer 5, under the worker loop): their slab, timers and
//! stack pool; starting one on a pooled stack and resuming it until it suspends — the switch
//! loop that acts on each [`Reason`] — and dropping them all at shutdown.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use corosensei::{Coroutine, CoroutineResult, Yielder};
use crossbeam_deque::Worker as Deque;

use super::context::{self, Fresh, READY, Shared, WorkerShared};
use super::overflow;
use super::stack::{self, StackPool};
use super::state::TaskState;
use super::sys::{self, Input, Reason};
use super::task::{self, Task};
use super::timer::{TimerKey, Timers};

/// A coroutine that yields while nothing else is runnable on its worker is resumed directly
/// up to this many times before going through the run queue.
const DIRECT_YIELDS: u32 = 16;

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

/// A worker's queues of coroutines not started yet, and who it is.
pub(crate) struct Queues {
    pub(crate) shared: Arc<Shared>,
    pub(crate) me: Arc<WorkerShared>,
    pub(crate) index: usize,
    pub(crate) fresh: Deque<Fresh>,
    /// New coroutines placed here by other workers (from `WorkerShared::placed`), started
    /// before the stealable ones and never stolen.
    pub(crate) placed: VecDeque<Fresh>,
}

/// The started coroutines of one worker.
pub(crate) struct Coros {
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    timers: Timers<u32>,
    stacks: StackPool,
    guard_slot: Option<&'static overflow::GuardSlot>,
    next_id: u64,
    id_end: u64,
}

impl Coros {
    pub(crate) fn new() -> Coros {
        Coros {
            slab: Vec::new(),
            free: Vec::new(),
            timers: Timers::new(),
            stacks: StackPool::new(),
            guard_slot: None,
            next_id: 0,
            id_end: 0,
        }
    }

    /// Claims this thread's slot of the overflow table (the worker thread is starting).
    pub(crate) fn claim_guard_slot(&mut self) {
        self.guard_slot = Some(overflow::claim_guard_slot());
    }

    /// Releases the slot claimed by [`Coros::claim_guard_slot`].
    pub(crate) fn release_guard_slot(&mut self) {
        if let Some(slot) = self.guard_slot.take() {
            overflow::release_guard_slot(slot);
        }
    }

    /// Wakes the coroutines whose park deadline passed.
    pub(crate) fn fire_timers(&mut self) {
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

    /// The earliest park deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Starts a new coroutine on this worker (its `load` already counts it) and runs it up to
    /// its first suspension.
    pub(crate) fn start(&mut self, fresh: Fresh, q: &Queues) {
        let size = match fresh.stack {
            0 => q.shared.stack_size,
            // Validated and rounded where it was requested.
            s => s,
        };
        let stack = match self.stacks.get(size) {
            Ok(s) => s,
            Err(e) => {
                q.me.load.fetch_sub(1, Ordering::Relaxed);
                bump(&q.me.finished, 1);
                task::drop_unstarted(fresh.f);
                log::error!(
                    "coroutine stack allocation failed size={size}: {e}; coroutine dropped"
                );
                return;
            }
        };
        self.stacks.started(q.me.load.load(Ordering::Relaxed));
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
            home: q.me.clone(),
            slot,
        });
        let guard = stack::guard_start(&stack);
        let body_task = task.clone();
        let f = fresh.f;
        let coro = Coro::with_stack(stack, move |y: &Yielder<Input, Reason>, _: Input| {
            sys::run_body(y, body_task, move |task| run_guarded(task.id, f));
        });
        self.slab[slot as usize] = Some(Entry {
            coro,
            task,
            timer: None,
            guard,
            stack_size: size,
        });
        self.resume(slot, None, q);
    }

    /// Resumes the coroutine in `slot` until it parks, yields to others or returns.
    pub(crate) fn resume(&mut self, slot: u32, mut input: Input, q: &Queues) {
        // Borrow the fields separately so the entry stays in place (no move per switch).
        let Coros {
            slab,
            free,
            timers,
            stacks,
            guard_slot,
            ..
        } = self;
        let Queues {
            shared,
            me,
            fresh,
            placed,
            ..
        } = q;
        let Some(Some(e)) = slab.get_mut(slot as usize) else {
            return;
        };
        if let Some(key) = e.timer.take() {
            timers.remove(key);
        }
        e.task.state.start_running();
        if let Some(g) = guard_slot {
            overflow::set_running(g, e.task.id, e.guard, e.stack_size);
        }
        me.tick.running(Some(e.task.id));
        // Cleared on every way out of this function (return, park, yield, unwind).
        let _not_running = NotRunning(&me.tick);
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
            let live = me.load.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            // After a burst the heap its coroutines used goes back to the OS.
            stacks.finished(live);
            bump(&me.finished, 1);
        }
    }

    /// Drops every started coroutine (shutdown), unwinding their stacks; returns how many.
    pub(crate) fn teardown(&mut self) -> usize {
        self.timers = Timers::new();
        let mut dropped = 0;
        for e in self.slab.drain(..).flatten() {
            e.task.state.finish();
            // Dropping the coroutine unwinds its stack, running its destructors here.
            drop(e);
            dropped += 1;
        }
        dropped
    }
}

/// Runs a coroutine body, containing panics to this coroutine.
///
/// Reporting the panic and dropping its payload run user code too (the logger, the payload's
/// `Drop`), so they stay inside `catch_unwind`: a panic there must not unwind out of the
/// coroutine's root. If they panic, the second payload is leaked (dropping it could panic
/// again) and one line goes to stderr without the logger.
fn run_guarded(id: u64, f: Box<dyn FnOnce() + Send>) {
    let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) else {
        return;
    };
    if context::on_worker_thread() && !sys::in_coroutine() {
        // Forced unwind of a parked coroutine at shutdown: not an error.
        task::contain(move || drop(payload), id);
        return;
    }
    task::contain(
        move || {
            log::error!(
                "coroutine {id} panicked: {}",
                task::panic_message(&*payload)
            );
            drop(payload);
        },
        id,
    );
}

/// Clears the tick's running coroutine when dropped.
struct NotRunning<'a>(&'a zmaster_pool::LoopTick);

impl Drop for NotRunning<'_> {
    fn drop(&mut self) {
        self.0.running(None);
    }
}

/// Adds to a counter only this worker thread writes (no locked instruction needed).
pub(crate) fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Release);
}
