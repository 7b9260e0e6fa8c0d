//! The stack switcher (layer 3): the current-coroutine pointer, the messages a coroutine hands
//! its worker when it suspends, and the suspension points built on them (`park`, the waker of
//! whoever runs).
//!
//! Contract (with `overflow.rs`, the only `unsafe` of the coroutine engine):
//! - `CURRENT` holds a pointer to the [`CoroCtx`] of the coroutine executing on this thread, or
//!   null. It is set by the coroutine itself (on entry and after every `suspend` returns) and
//!   cleared by drop guards — one in [`run_body`], dropped when the body returns or unwinds, and
//!   one around every `resume` ([`ClearCurrent`]), dropped when `resume` returns or unwinds —
//!   so it is non-null exactly while a coroutine body runs on this thread, on every exit path.
//!   Coroutines never move to another thread once started, so the pointer never crosses
//!   threads.

use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use corosensei::Yielder;

use super::context::{self, Fresh};
use super::task::{self, Task, Waker};

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

/// Per-coroutine context, living in the coroutine body's frame on its own stack.
pub(crate) struct CoroCtx<'a> {
    yielder: &'a Yielder<Input, Reason>,
    pub(crate) task: Arc<Task>,
}

thread_local! {
    static CURRENT: Cell<*const ()> = const { Cell::new(ptr::null()) };
}

/// Runs `f` as the body of a coroutine whose yielder is `yielder`.
pub(crate) fn run_body(yielder: &Yielder<Input, Reason>, task: Arc<Task>, f: impl FnOnce(&Task)) {
    let ctx = CoroCtx { yielder, task };
    // Declared after `ctx`, so dropped before it: the pointer is gone before its target, also
    // when `f` unwinds.
    let _clear = ClearCurrent;
    CURRENT.set((&ctx as *const CoroCtx<'_>).cast());
    f(&ctx.task);
}

/// Clears the current-coroutine pointer when dropped: the scheduler holds one across every
/// `Coroutine::resume`, so the pointer is reset whether `resume` returns or unwinds.
pub(crate) struct ClearCurrent;

impl Drop for ClearCurrent {
    fn drop(&mut self) {
        CURRENT.set(ptr::null());
    }
}

/// Whether a coroutine body is executing on this thread.
pub(crate) fn in_coroutine() -> bool {
    !CURRENT.get().is_null()
}

/// Runs `f` with the current coroutine's context, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(&CoroCtx<'_>) -> R) -> Option<R> {
    let p = CURRENT.get();
    if p.is_null() {
        return None;
    }
    // SAFETY: per the module contract, a non-null CURRENT points at the CoroCtx in the frame of
    // the coroutine body running on this thread right now; that frame outlives this call.
    let ctx = unsafe { &*p.cast::<CoroCtx<'_>>() };
    Some(f(ctx))
}

/// Suspends the current coroutine, handing `reason` to its scheduler.
///
/// # Panics
/// Panics if called outside a coroutine (callers check [`in_coroutine`] first).
pub(crate) fn suspend(reason: Reason) -> Input {
    let p = CURRENT.get();
    assert!(!p.is_null(), "coroutine suspend called outside a coroutine");
    // SAFETY: as in `with_current`: the context lives in the running body's frame, which stays
    // allocated while the coroutine is suspended inside this call.
    let ctx = unsafe { &*p.cast::<CoroCtx<'_>>() };
    let input = ctx.yielder.suspend(reason);
    // Back on the same thread (coroutines never migrate): re-publish our context.
    CURRENT.set(p);
    input
}

/// A waker for whoever is running: the current coroutine, else the current thread.
pub(crate) fn current_waker() -> Waker {
    with_current(|ctx| Waker::Task(ctx.task.clone())).unwrap_or_else(task::thread_waker)
}

/// Waits until woken or until `deadline`. May return spuriously; callers loop on their
/// condition. Returns false when waiting is impossible — on a scheduler thread outside any
/// coroutine, which only happens while the scheduler tears down and unwinds its coroutines —
/// and the caller must then give up with an error instead of looping.
pub(crate) fn park(deadline: Option<Instant>) -> bool {
    if in_coroutine() {
        suspend(Reason::Park(deadline));
        true
    } else if context::on_worker_thread() {
        false
    } else {
        task::wait_thread(deadline);
        true
    }
}
