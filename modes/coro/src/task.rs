//! Coroutine tasks (layer 2, on the worker context): the shared task handle and its state
//! machine (`state.rs`), wakers (coroutine or plain thread), the clean-up guard held across a
//! park, and containing panics of user code a worker drops or reports.

use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

use super::context::WorkerShared;
use super::state::TaskState;

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

/// A waker for the calling plain thread.
pub(crate) fn thread_waker() -> Waker {
    Waker::Thread(SIGNAL.with(Arc::clone))
}

/// Blocks the calling plain thread until its [`thread_waker`] is woken or `deadline` passes.
pub(crate) fn wait_thread(deadline: Option<Instant>) {
    SIGNAL.with(|s| s.wait(deadline));
}

/// Runs a clean-up when dropped unless disarmed: held across a park, it removes the waiter
/// when the park unwinds (the scheduler shutting down unwinds parked coroutines), so the next
/// wake-up is not spent on a finished coroutine while another waiter sleeps on.
pub(crate) struct OnUnwind<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> OnUnwind<F> {
    pub(crate) fn new(f: F) -> OnUnwind<F> {
        OnUnwind(Some(f))
    }

    /// The guarded call returned normally: nothing to clean up here.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for OnUnwind<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// The error returned by operations that cannot wait because the scheduler is shutting down.
pub(crate) fn shutdown_error() -> io::Error {
    io::Error::other("coroutine scheduler is shutting down")
}

/// Runs `f`, which reports or drops a panic payload; a second panic is leaked and noted.
pub(crate) fn contain(f: impl FnOnce(), id: u64) {
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
