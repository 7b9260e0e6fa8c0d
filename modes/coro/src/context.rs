//! The worker context (layer 1, the bottom of the engine): what a worker thread is and shares —
//! the thread-locals naming the worker running on this thread and its ready queue, the state
//! other threads may touch ([`WorkerShared`]: inbox, epoll handle, counters) and the state all
//! workers of one scheduler share ([`Shared`]: injector, stealers, sleepers).
//!
//! Waking: a wake for a coroutine whose home worker is the current thread goes straight into
//! that worker's thread-local run queue; from any other thread it goes into the home worker's
//! inbox, and the worker is notified through its poller only if it is asleep.
//!
//! The epoll instance and eventfd waker are the aio pool's (`zmaster_pool::reactor`). Why not
//! `polling`: its `wait` costs four syscalls besides `epoll_wait` (timerfd arm and re-arm,
//! eventfd read and re-arm) and it does not report `EPOLLRDHUP`. Timers are the worker's own
//! (`timer.rs`), passed to `epoll_wait` as its timeout.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer};
use crossbeam_utils::CachePadded;
use nix::sys::epoll::EpollEvent;
use zmaster_pool::LoopTick;
use zmaster_pool::reactor::{Reactor, Waker};

use super::runq::RunQueue;

/// A coroutine that has not started yet: movable between threads, may be stolen.
pub(crate) struct Fresh {
    /// Stack size, already validated and rounded (0 = the scheduler default).
    pub(crate) stack: usize,
    /// The body.
    pub(crate) f: Box<dyn FnOnce() + Send>,
}

/// State shared by all workers of one scheduler and its handles.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Fresh>,
    pub(crate) workers: Vec<Arc<WorkerShared>>,
    pub(crate) stealers: Vec<Stealer<Fresh>>,
    pub(crate) shutdown: AtomicBool,
    /// Coroutines spawned through handles (the injector).
    injected: CachePadded<AtomicUsize>,
    /// Workers currently asleep (a hint: checked before looking for one to wake).
    pub(crate) sleepers: AtomicUsize,
    /// A worker was notified by `wake_one` and has not woken up yet.
    pub(crate) waking: AtomicBool,
    /// Workers in their idle spin (`Worker::spin_poll`), which polls for stealable work: on one
    /// CPU, while one spins, `wake_one` wakes nobody (only worker 0 spins there, and a wake-up
    /// per connection for another would cost two context switches; `zmaster_pool::spin`). On
    /// several CPUs a spinner may be descheduled in its yield, so sleepers are woken as before.
    pub(crate) spinning: CachePadded<AtomicUsize>,
    /// The process may run on one CPU only: `wake_one` wakes the first sleeper, not the next
    /// in turn, and workers start the coroutines they take (`Worker::start`), so a scheduler
    /// runs on worker 0 as one worker would (`zmaster_pool::spin`).
    pub(crate) one_cpu: bool,
    /// Default stack size, rounded.
    pub(crate) stack_size: usize,
    /// Stacks each worker's pool keeps (`Config::pool_stacks`).
    pub(crate) pool_stacks: usize,
    rr: AtomicUsize,
}

/// What other threads may touch of one worker.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub(crate) index: usize,
    pub(crate) poller: Poller,
    /// Slots of this worker's coroutines woken from other threads.
    pub(crate) inbox: Injector<u32>,
    /// Reactor keys of I/O sources dropped (already deleted from the poller).
    pub(crate) dereg: Injector<usize>,
    pub(crate) sleeping: AtomicBool,
    /// Coroutines spawned from coroutines running on this worker.
    pub(crate) spawned: CachePadded<AtomicUsize>,
    /// Coroutines that finished (or were dropped) on this worker.
    pub(crate) finished: CachePadded<AtomicUsize>,
    /// Coroutines started here and not finished, plus those placed here and not started yet:
    /// what a worker about to start a new coroutine compares (see `runq::place`).
    pub(crate) load: CachePadded<AtomicUsize>,
    /// New coroutines another worker placed here (to balance load); never stolen again.
    pub(crate) placed: Injector<Fresh>,
    /// Hang detection: when the current loop turn started (idle while asleep in the
    /// poller) and which coroutine runs.
    pub(crate) tick: LoopTick,
}

thread_local! {
    /// The worker running on this thread (compared by address only).
    static WORKER: Cell<*const WorkerShared> = const { Cell::new(std::ptr::null()) };
    /// The scheduler this worker thread belongs to.
    static SHARED: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// The ready queue of this worker thread.
    pub(crate) static READY: RefCell<RunQueue> = const { RefCell::new(RunQueue::new()) };
}

/// Marks the calling thread as `worker` of `shared` (None: no longer a worker).
pub(crate) fn set_worker(worker: Option<(&Arc<WorkerShared>, &Arc<Shared>)>) {
    WORKER.set(worker.map_or(std::ptr::null(), |(w, _)| Arc::as_ptr(w)));
    SHARED.set(worker.map(|(_, s)| s.clone()));
}

/// The worker running on the calling thread, if it is one.
pub(crate) fn current_worker() -> Option<Arc<WorkerShared>> {
    let me = WORKER.get();
    if me.is_null() {
        return None;
    }
    SHARED.with_borrow(|s| {
        s.as_ref()?
            .workers
            .iter()
            .find(|w| std::ptr::eq(Arc::as_ptr(w), me))
            .cloned()
    })
}

/// Whether the calling thread is a scheduler worker.
pub(crate) fn on_worker_thread() -> bool {
    !WORKER.get().is_null()
}

/// Whether the calling thread is a worker of `shared`.
pub(crate) fn is_worker_of(shared: &Shared) -> bool {
    let me = WORKER.get();
    shared
        .workers
        .iter()
        .any(|w| std::ptr::eq(me, Arc::as_ptr(w)))
}

/// The scheduler the calling worker thread belongs to (None on other threads).
pub(crate) fn current_shared() -> Option<Arc<Shared>> {
    SHARED.with_borrow(|s| s.clone())
}

impl WorkerShared {
    /// The shared state of worker `index`, with a new poller.
    pub(crate) fn new(index: usize) -> io::Result<WorkerShared> {
        Ok(WorkerShared {
            index,
            poller: Poller::new()?,
            inbox: Injector::new(),
            dereg: Injector::new(),
            sleeping: AtomicBool::new(false),
            spawned: CachePadded::new(AtomicUsize::new(0)),
            finished: CachePadded::new(AtomicUsize::new(0)),
            load: CachePadded::new(AtomicUsize::new(0)),
            placed: Injector::new(),
            tick: LoopTick::new(format!("zm-coro-{index}")),
        })
    }
}

impl WorkerShared {
    /// Puts a woken coroutine (in `slot` of this worker) into the run queue.
    pub(crate) fn schedule(&self, slot: u32) {
        if std::ptr::eq(WORKER.get(), self) {
            READY.with_borrow_mut(|q| q.push(slot));
        } else {
            self.inbox.push(slot);
            self.unpark();
        }
    }

    /// Notifies the worker if it sleeps (call after publishing work for it).
    pub(crate) fn unpark(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed)
            && self.sleeping.swap(false, Ordering::SeqCst)
            && let Err(e) = self.poller.notify()
        {
            log::error!("coroutine worker={} notify failed: {e}", self.index);
        }
    }
}

impl Shared {
    /// Wakes one sleeping worker, if any (after new stealable work was published).
    ///
    /// At most one wake-up is in flight: while a notified worker has not yet woken up (and
    /// will then look for work, seeing everything published before), further calls return.
    ///
    /// On one CPU, nor while a worker spins: it takes the work itself. (It stops spinning
    /// before it announces sleep and re-checks for work after a fence, so work published
    /// before this fence is seen by it or makes this call go on to wake a sleeper.)
    pub(crate) fn wake_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) == 0
            || self.waking.load(Ordering::Relaxed)
            || (self.one_cpu && self.spinning.load(Ordering::Relaxed) > 0)
        {
            return;
        }
        if self.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let n = self.workers.len();
        let start = if self.one_cpu {
            0
        } else {
            let start = self.rr.load(Ordering::Relaxed);
            self.rr.store(start.wrapping_add(1), Ordering::Relaxed);
            start
        };
        for i in 0..n {
            let w = &self.workers[(start + i) % n];
            if w.sleeping.load(Ordering::Relaxed) && w.sleeping.swap(false, Ordering::SeqCst) {
                if let Err(e) = w.poller.notify() {
                    log::error!("coroutine worker={} notify failed: {e}", w.index);
                }
                return;
            }
        }
        self.waking.store(false, Ordering::SeqCst);
    }

    /// The state of a scheduler with these workers (and their deques' stealers).
    pub(crate) fn new(
        workers: Vec<Arc<WorkerShared>>,
        stealers: Vec<Stealer<Fresh>>,
        stack_size: usize,
        pool_stacks: usize,
    ) -> Shared {
        Shared {
            injector: Injector::new(),
            stealers,
            workers,
            shutdown: AtomicBool::new(false),
            injected: CachePadded::new(AtomicUsize::new(0)),
            sleepers: AtomicUsize::new(0),
            waking: AtomicBool::new(false),
            spinning: CachePadded::new(AtomicUsize::new(0)),
            one_cpu: zmaster_pool::spin::one_cpu(),
            stack_size,
            pool_stacks,
            rr: AtomicUsize::new(0),
        }
    }

    /// Queues a new coroutine from outside the scheduler (a handle); dropped after shutdown.
    pub(crate) fn spawn(&self, stack: usize, f: Box<dyn FnOnce() + Send>) {
        if self.shutdown.load(Ordering::Acquire) {
            log::debug!("coroutine spawn after scheduler shutdown ignored");
            return;
        }
        self.injected.fetch_add(1, Ordering::Release);
        self.injector.push(Fresh { stack, f });
        self.wake_one();
    }

    /// The workers stalled for longer than `timeout` (see `Scheduler::stalled`).
    pub(crate) fn stalled(&self, timeout: Duration) -> Vec<zmaster_pool::Stall> {
        zmaster_pool::stalled(self.workers.iter().map(|w| &w.tick), timeout)
    }

    /// Coroutines spawned and not finished.
    pub(crate) fn live(&self) -> usize {
        // Finished first: every finish counted implies its spawn is counted by the time the
        // spawn counters are read below, so the difference never underflows in practice.
        let finished: usize = self
            .workers
            .iter()
            .map(|w| w.finished.load(Ordering::Acquire))
            .sum();
        let spawned: usize = self.injected.load(Ordering::Acquire)
            + self
                .workers
                .iter()
                .map(|w| w.spawned.load(Ordering::Acquire))
                .sum::<usize>();
        spawned.saturating_sub(finished)
    }
}

/// One worker's epoll instance and waker (the aio pool's primitive); shared with other threads
/// (they notify, and delete sources they drop).
#[derive(Debug)]
pub(crate) struct Poller {
    reactor: Reactor,
    waker: Waker,
}

impl Poller {
    /// A new epoll instance with its waker registered.
    pub(crate) fn new() -> io::Result<Poller> {
        let waker = Waker::new()?;
        let reactor = Reactor::new(&waker)?;
        Ok(Poller { reactor, waker })
    }

    /// Wakes the thread blocked in (or about to enter) [`Poller::wait`].
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.waker.signal()
    }

    /// Removes `fd` (before it is closed, so no stale event can name its key).
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.reactor.delete(fd)
    }

    /// Adds `fd` under `key`, edge-triggered for both directions.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        self.reactor.add(fd, key)
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds; `None` = forever) and fills
    /// `events`; returns their number (wake-ups included). The reactor layer hands each source
    /// event to its `IoState` (`reactor::dispatch`).
    pub(crate) fn wait(
        &self,
        events: &mut [EpollEvent],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.reactor.wait(events, timeout)
    }
}
