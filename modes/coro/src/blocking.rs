//! Running blocking or CPU-heavy work off the scheduler threads (on rayon's pool) while the
//! calling coroutine is parked.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;

use super::sys;
use super::task::Waker;

/// Runs `f` on the rayon thread pool and parks the calling coroutine until it returns, then
/// returns its value; a panic in `f` is resumed in the caller.
///
/// Called outside a coroutine (a plain thread), `f` simply runs on the calling thread.
///
/// Rayon's pool has one thread per CPU: it suits CPU-heavy work. Long blocking waits (file
/// system, DNS, a database driver) occupy a rayon thread each; keep them short or use a
/// dedicated thread.
pub fn spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if !sys::in_coroutine() {
        return f();
    }
    let slot: Arc<Mutex<Option<thread::Result<T>>>> = Arc::new(Mutex::new(None));
    let waker: Waker = sys::current_waker();
    let (slot2, waker2) = (slot.clone(), waker);
    rayon::spawn(move || {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        *slot2.lock() = Some(r);
        waker2.wake();
    });
    loop {
        if let Some(r) = slot.lock().take() {
            return match r {
                Ok(v) => v,
                Err(p) => panic::resume_unwind(p),
            };
        }
        if !sys::park(None) {
            // Teardown unwinding: cannot wait for the pool; abandon the result.
            panic::resume_unwind(Box::new("coroutine scheduler is shutting down"));
        }
    }
}
