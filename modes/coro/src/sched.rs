//! The scheduler (layer 5, with the worker loop): its public face (`Config`, `Scheduler`,
//! `Handle`) and the calls a coroutine makes on its scheduler (`go`, `sleep`, `yield_now`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_deque::Worker as Deque;
use zmaster_pool::Stall;

use super::context::{self, Fresh, Shared, WorkerShared};
use super::overflow;
use super::stack::{self, DEFAULT_STACK_SIZE};
use super::sys::{self, Reason};
use super::worker;

/// Scheduler settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Worker threads (`server-thread-count`); 0 means one per CPU.
    pub threads: usize,
    /// Default coroutine stack size in bytes (`server-coroutine-stack-size`); 0 means
    /// [`DEFAULT_STACK_SIZE`] (128 KiB). Rounded up to whole pages, at least 16 KiB, at most
    /// [`MAX_STACK_SIZE`](stack::MAX_STACK_SIZE) (`Scheduler::start` refuses more).
    pub stack_size: usize,
    /// Finished coroutines' stacks each worker keeps for reuse, all sizes together
    /// (`server-coroutine-stack-pool`, default 256): up to 16 stay resident, the others are
    /// `madvise(MADV_DONTNEED)`ed, and a stack finishing past the limit is unmapped (0: every
    /// one is). See `docs/coroutine.md`.
    pub pool_stacks: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            threads: 0,
            stack_size: DEFAULT_STACK_SIZE,
            pool_stacks: stack::DEFAULT_POOL_STACKS,
        }
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
    /// The stack size exceeds [`MAX_STACK_SIZE`](stack::MAX_STACK_SIZE) (`InvalidInput`), or
    /// creating a poller, installing the stack-overflow handler or spawning a thread failed.
    pub fn start(config: Config) -> io::Result<Scheduler> {
        overflow::install_overflow_handler()?;
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
            .map(|index| WorkerShared::new(index).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let stealers = deques.iter().map(Deque::stealer).collect();
        let shared = Arc::new(Shared::new(
            workers,
            stealers,
            stack_size,
            config.pool_stacks,
        ));
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
        log::debug!(
            "coroutine scheduler started threads={n} stack_size={stack_size} pool_stacks={}",
            config.pool_stacks
        );
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

    /// The worker threads (`zm-coro-N`) busy in one loop turn for longer than `timeout`
    /// (`server-hang-timeout`), each with the coroutine it is running: one that does not
    /// yield (a busy loop, a blocking call). A worker asleep in its poller is never listed.
    /// Cheap (two atomic loads per worker); call it from a watchdog every second or so.
    pub fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        self.shared.stalled(timeout)
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
        if context::is_worker_of(&self.shared) {
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
        context::current_shared().map(|shared| Handle { shared })
    }

    /// Spawns a coroutine with the default stack size. From a plain thread this is an
    /// injector push plus, if a worker sleeps, one notification. After shutdown `f` is dropped.
    pub fn go<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.shared.spawn(0, Box::new(f));
    }

    /// Spawns a coroutine with a stack of at least `size` bytes (0: the scheduler default).
    ///
    /// # Panics
    /// Panics here, in the caller, when `size` exceeds [`MAX_STACK_SIZE`](stack::MAX_STACK_SIZE).
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

    /// As [`Scheduler::stalled`].
    pub fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        self.shared.stalled(timeout)
    }
}

/// Spawns a coroutine on the scheduler running the caller, with the default stack size.
///
/// # Panics
/// Panics when called outside a coroutine: plain threads spawn with [`Handle::go`].
pub fn go<F: FnOnce() + Send + 'static>(f: F) {
    go_with_stack(0, f);
}

/// Spawns a coroutine with a stack of at least `size` bytes (0: the scheduler default).
///
/// The new coroutine is queued on the caller's worker and may be started there or by an idle
/// worker; the caller continues at once.
///
/// # Panics
/// Panics when called outside a coroutine (plain threads spawn with
/// [`Handle::go_with_stack`]), or when `size` exceeds [`MAX_STACK_SIZE`](stack::MAX_STACK_SIZE); both panic here, in
/// the caller, never on a worker.
pub fn go_with_stack<F: FnOnce() + Send + 'static>(size: usize, f: F) {
    let stack = match size {
        0 => 0,
        s => stack::round_size(s).unwrap_or_else(|| panic!("{}", stack::too_large(s))),
    };
    if !sys::in_coroutine() && context::on_worker_thread() {
        // A destructor running while the scheduler tears down: nothing can start any more.
        log::debug!("coroutine spawn during scheduler shutdown ignored");
        return;
    }
    assert!(
        sys::in_coroutine(),
        "zmaster_modes::coroutine::go called outside a coroutine; \
         spawn from plain threads with Scheduler::handle().go(..)"
    );
    sys::suspend(Reason::Spawn(Fresh {
        stack,
        f: Box::new(f),
    }));
}

/// Parks the calling coroutine for `d` (at least; timers fire on the worker's next loop); a
/// `d` too large to add to the current time (`Duration::MAX`) parks it forever. Outside a
/// coroutine, sleeps the thread.
pub fn sleep(d: Duration) {
    if !sys::in_coroutine() {
        if !context::on_worker_thread() {
            thread::sleep(d);
        }
        return;
    }
    let Some(deadline) = Instant::now().checked_add(d) else {
        // Too far to represent: forever (until the scheduler stops and unwinds us).
        while sys::park(None) {}
        return;
    };
    while Instant::now() < deadline {
        if !sys::park(Some(deadline)) {
            return;
        }
    }
}

/// Lets the other ready coroutines of this worker run, then continues. Outside a coroutine,
/// yields the thread.
pub fn yield_now() {
    if sys::in_coroutine() {
        sys::suspend(Reason::Yield);
    } else {
        thread::yield_now();
    }
}

/// Whether the caller runs inside a coroutine.
pub fn in_coroutine() -> bool {
    sys::in_coroutine()
}

/// The id of the calling coroutine (as in logs and the stack-overflow report).
pub fn current_id() -> Option<u64> {
    sys::with_current(|ctx| ctx.task.id)
}
