//! The scheduler's public face (`Config`, `Scheduler`, `Handle`) and the state its workers
//! share: the injector for new coroutines, per-worker inboxes, pollers and sleep flags.
//!
//! Waking: a wake for a coroutine whose home worker is the current thread goes straight into
//! that worker's thread-local run queue; from any other thread it goes into the home worker's
//! inbox, and the worker is notified through its poller only if it is asleep.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::thread::{self, JoinHandle};

use crossbeam_deque::{Injector, Stealer, Worker as Deque};
use crossbeam_utils::CachePadded;

use super::reactor::Poller;
use super::runq::RunQueue;
use super::stack::{self, DEFAULT_STACK_SIZE};
use super::sys;
use super::task::Fresh;
use super::worker;

/// Scheduler settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Worker threads (`server-thread-count`); 0 means one per CPU.
    pub threads: usize,
    /// Default coroutine stack size in bytes (`server-coroutine-stack-size`); 0 means
    /// [`DEFAULT_STACK_SIZE`] (128 KiB). Rounded up to whole pages, at least 16 KiB, at most
    /// [`MAX_STACK_SIZE`](super::MAX_STACK_SIZE) (`Scheduler::start` refuses more).
    pub stack_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            threads: 0,
            stack_size: DEFAULT_STACK_SIZE,
        }
    }
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
    /// Default stack size, rounded.
    pub(crate) stack_size: usize,
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
    pub(crate) fn wake_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) == 0 || self.waking.load(Ordering::Relaxed) {
            return;
        }
        if self.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let n = self.workers.len();
        let start = self.rr.load(Ordering::Relaxed);
        self.rr.store(start.wrapping_add(1), Ordering::Relaxed);
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

    fn spawn(&self, stack: usize, f: Box<dyn FnOnce() + Send>) {
        if self.shutdown.load(Ordering::Acquire) {
            log::debug!("coroutine spawn after scheduler shutdown ignored");
            return;
        }
        self.injected.fetch_add(1, Ordering::Release);
        self.injector.push(Fresh { stack, f });
        self.wake_one();
    }

    fn live(&self) -> usize {
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

/// An M:N coroutine scheduler: `threads` workers named `zm-coro-N`.
///
/// Dropping it is the same as [`Scheduler::shutdown`].
pub struct Scheduler {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable, `Send + Sync` handle to spawn coroutines on a scheduler, from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("threads", &self.shared.workers.len())
            .finish()
    }
}

impl Scheduler {
    /// Starts the worker threads.
    ///
    /// # Errors
    /// The stack size exceeds [`MAX_STACK_SIZE`](super::MAX_STACK_SIZE) (`InvalidInput`), or
    /// creating a poller, installing the stack-overflow handler or spawning a thread failed.
    pub fn start(config: Config) -> io::Result<Scheduler> {
        sys::install_overflow_handler()?;
        let n = match config.threads {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let requested = match config.stack_size {
            0 => DEFAULT_STACK_SIZE,
            s => s,
        };
        let stack_size = stack::round_size(requested).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, stack::too_large(requested))
        })?;
        let deques: Vec<Deque<Fresh>> = (0..n).map(|_| Deque::new_fifo()).collect();
        let workers = (0..n)
            .map(|index| {
                Ok(Arc::new(WorkerShared {
                    index,
                    poller: Poller::new()?,
                    inbox: Injector::new(),
                    dereg: Injector::new(),
                    sleeping: AtomicBool::new(false),
                    spawned: CachePadded::new(AtomicUsize::new(0)),
                    finished: CachePadded::new(AtomicUsize::new(0)),
                    load: CachePadded::new(AtomicUsize::new(0)),
                    placed: Injector::new(),
                }))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Deque::stealer).collect(),
            workers,
            shutdown: AtomicBool::new(false),
            injected: CachePadded::new(AtomicUsize::new(0)),
            sleepers: AtomicUsize::new(0),
            waking: AtomicBool::new(false),
            stack_size,
            rr: AtomicUsize::new(0),
        });
        let mut sched = Scheduler {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
        };
        for (index, deque) in deques.into_iter().enumerate() {
            let shared = shared.clone();
            let t = thread::Builder::new()
                .name(format!("zm-coro-{index}"))
                .spawn(move || worker::run(shared, index, deque))?;
            sched.threads.push(t);
        }
        log::debug!("coroutine scheduler started threads={n} stack_size={stack_size}");
        Ok(sched)
    }

    /// A handle for spawning coroutines from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Number of coroutines spawned and not yet finished (queued, running or parked); for
    /// draining on softstop.
    pub fn live_coroutines(&self) -> usize {
        self.shared.live()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.shared.workers.len()
    }

    /// Stops the workers and joins them. Each worker stops at its next scheduling point: the
    /// coroutine running at that moment finishes its current slice, coroutines not started yet
    /// are dropped, and parked or ready coroutines are dropped by unwinding their stacks (their
    /// destructors run; I/O and waits inside those destructors fail instead of blocking). To
    /// let connections finish first, wait until [`Scheduler::live_coroutines`] reaches zero.
    ///
    /// Called from inside one of its own coroutines it signals the workers but cannot join
    /// them (that would deadlock); the threads then exit on their own.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in &self.shared.workers {
            w.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = w.poller.notify() {
                log::error!("coroutine worker={} notify failed: {e}", w.index);
            }
        }
        let own = self
            .shared
            .workers
            .iter()
            .any(|w| std::ptr::eq(WORKER.get(), Arc::as_ptr(w)));
        if own {
            log::error!("coroutine Scheduler::shutdown called from its own worker; not joining");
            return;
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("coroutine worker thread panicked");
            }
        }
    }
}

impl Handle {
    /// The scheduler of the calling coroutine (None on other threads).
    pub fn try_current() -> Option<Handle> {
        SHARED.with_borrow(|s| s.clone().map(|shared| Handle { shared }))
    }

    /// Spawns a coroutine with the default stack size. From a plain thread this is an
    /// injector push plus, if a worker sleeps, one notification. After shutdown `f` is dropped.
    pub fn go<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.shared.spawn(0, Box::new(f));
    }

    /// Spawns a coroutine with a stack of at least `size` bytes (0: the scheduler default).
    ///
    /// # Panics
    /// Panics here, in the caller, when `size` exceeds [`MAX_STACK_SIZE`](super::MAX_STACK_SIZE).
    pub fn go_with_stack<F: FnOnce() + Send + 'static>(&self, size: usize, f: F) {
        let stack = match size {
            0 => 0,
            s => stack::round_size(s).unwrap_or_else(|| panic!("{}", stack::too_large(s))),
        };
        self.shared.spawn(stack, Box::new(f));
    }

    /// Number of coroutines spawned and not yet finished.
    pub fn live_coroutines(&self) -> usize {
        self.shared.live()
    }
}
