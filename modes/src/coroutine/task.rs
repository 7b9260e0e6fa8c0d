//! Coroutine tasks and waiting: the shared task handle, the messages a coroutine sends its
//! scheduler when it suspends, wakers (coroutine or plain thread), `park`, and the panic guard
//! around a coroutine body.

use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

use super::sched::{self, WorkerShared};
use super::state::TaskState;
use super::sys;

/// A coroutine that has not started yet: movable between threads, may be stolen.
pub(crate) struct Fresh {
    /// Stack size, already validated and rounded (0 = the scheduler default).
    pub(crate) stack: usize,
    /// The body.
    pub(crate) f: Box<dyn FnOnce() + Send>,
}

/// Why a coroutine suspended: what its worker must do before resuming anything.
pub(crate) enum Reason {
    /// Re-queue at the back of the ready queue.
    Yield,
    /// Wait for a wake-up, or until the deadline.
    Park(Option<Instant>),
    /// Queue a new coroutine on this worker, then resume the caller at once.
    Spawn(Fresh),
}

/// The value a coroutine receives when resumed (always `None` today; kept as the channel for
/// an error the scheduler may have to hand back).
pub(crate) type Input = Option<io::Error>;

/// A started coroutine, as seen by whoever may wake it.
#[derive(Debug)]
pub(crate) struct Task {
    /// Coroutine id (for logs and the overflow report).
    pub(crate) id: u64,
    pub(crate) state: TaskState,
    /// The worker the coroutine runs on, forever.
    pub(crate) home: Arc<WorkerShared>,
    /// Its slot on that worker.
    pub(crate) slot: u32,
}

impl Task {
    /// Makes the coroutine runnable if it is parked (or makes its next park return).
    pub(crate) fn wake(&self) {
        if self.state.wake() {
            self.home.schedule(self.slot);
        }
    }
}

/// Something that waits: a parked coroutine or a blocked plain thread.
#[derive(Clone, Debug)]
pub(crate) enum Waker {
    Task(Arc<Task>),
    Thread(Arc<ThreadSignal>),
}

impl Waker {
    /// Wakes the waiter (spurious wake-ups are allowed: waiters re-check their condition).
    pub(crate) fn wake(&self) {
        match self {
            Waker::Task(t) => t.wake(),
            Waker::Thread(s) => s.signal(),
        }
    }

    /// Whether both wake the same waiter.
    pub(crate) fn same(&self, other: &Waker) -> bool {
        match (self, other) {
            (Waker::Task(a), Waker::Task(b)) => Arc::ptr_eq(a, b),
            (Waker::Thread(a), Waker::Thread(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A plain thread's park flag.
#[derive(Debug)]
pub(crate) struct ThreadSignal {
    thread: Thread,
    notified: AtomicBool,
}

impl ThreadSignal {
    fn signal(&self) {
        self.notified.store(true, Ordering::Release);
        self.thread.unpark();
    }

    fn wait(&self, deadline: Option<Instant>) {
        while !self.notified.swap(false, Ordering::Acquire) {
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return;
                    }
                    thread::park_timeout(d - now);
                }
            }
        }
    }
}

thread_local! {
    static SIGNAL: Arc<ThreadSignal> = Arc::new(ThreadSignal {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
}

/// A waker for whoever is running: the current coroutine, else the current thread.
pub(crate) fn current_waker() -> Waker {
    sys::with_current(|ctx| Waker::Task(ctx.task.clone()))
        .unwrap_or_else(|| Waker::Thread(SIGNAL.with(Arc::clone)))
}

/// Waits until woken or until `deadline`. May return spuriously; callers loop on their
/// condition. Returns false when waiting is impossible — on a scheduler thread outside any
/// coroutine, which only happens while the scheduler tears down and unwinds its coroutines —
/// and the caller must then give up with an error instead of looping.
pub(crate) fn park(deadline: Option<Instant>) -> bool {
    if sys::in_coroutine() {
        sys::suspend(Reason::Park(deadline));
        true
    } else if sched::on_worker_thread() {
        false
    } else {
        SIGNAL.with(|s| s.wait(deadline));
        true
    }
}

/// The error returned by operations that cannot wait because the scheduler is shutting down.
pub(crate) fn shutdown_error() -> io::Error {
    io::Error::other("coroutine scheduler is shutting down")
}

/// Runs a coroutine body, containing panics to this coroutine.
///
/// Reporting the panic and dropping its payload run user code too (the logger, the payload's
/// `Drop`), so they stay inside `catch_unwind`: a panic there must not unwind out of the
/// coroutine's root. If they panic, the second payload is leaked (dropping it could panic
/// again) and one line goes to stderr without the logger.
pub(crate) fn run_guarded(id: u64, f: Box<dyn FnOnce() + Send>) {
    let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) else {
        return;
    };
    if sched::on_worker_thread() && !sys::in_coroutine() {
        // Forced unwind of a parked coroutine at shutdown: not an error.
        contain(move || drop(payload), id);
        return;
    }
    contain(
        move || {
            log::error!("coroutine {id} panicked: {}", panic_message(&*payload));
            drop(payload);
        },
        id,
    );
}

/// Runs `f`, which reports or drops a panic payload; a second panic is leaked and noted.
fn contain(f: impl FnOnce(), id: u64) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(f)) {
        std::mem::forget(again);
        let _ = writeln!(
            io::stderr(),
            "coroutine {id} panicked, and reporting or dropping the panic panicked too"
        );
    }
}

/// Drops a coroutine closure that will never run (its stack could not be allocated, or the
/// scheduler stops) on a worker thread: its `Drop` is user code, so a panic there is contained
/// (leaked, one line on stderr) instead of killing the worker.
pub(crate) fn drop_unstarted(f: Box<dyn FnOnce() + Send>) {
    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(move || drop(f))) {
        std::mem::forget(p);
        let _ = writeln!(
            io::stderr(),
            "coroutine closure dropped without running panicked in its destructor"
        );
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
