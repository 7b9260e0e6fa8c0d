//! A mutex whose `lock` parks the calling coroutine (or blocks a plain thread) while another
//! holder has it. The guard may be held across yields and I/O: coroutines never change thread.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use super::super::sys;
use super::super::task::{OnUnwind, Waker};
use super::WaitQueue;

/// How long a destructor run at scheduler teardown waits for a held [`Mutex`] before aborting.
const TEARDOWN_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The one line printed before that abort.
pub(crate) const TEARDOWN_DEADLOCK: &str = "zmaster-coro: a destructor run at scheduler shutdown \
    waited 5s for a coroutine Mutex still held (likely by a coroutine not yet unwound on the \
    same worker); aborting instead of hanging";

/// A mutual-exclusion lock for coroutines.
pub struct Mutex<T: ?Sized> {
    waiters: parking_lot::Mutex<WaitQueue>,
    nwait: AtomicUsize,
    inner: parking_lot::Mutex<T>,
}

/// Holds a [`Mutex`] locked; unlocks (and wakes one waiter) on drop.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    // None only inside `drop`.
    guard: Option<parking_lot::MutexGuard<'a, T>>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            waiters: parking_lot::Mutex::new(WaitQueue::new()),
            nwait: AtomicUsize::new(0),
            inner: parking_lot::Mutex::new(value),
        }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking the coroutine until the lock is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if let Some(g) = self.try_lock() {
            return g;
        }
        let me = sys::current_waker();
        loop {
            {
                let mut q = self.waiters.lock();
                q.push(&me);
                self.nwait.store(q.len(), Ordering::SeqCst);
            }
            fence(Ordering::SeqCst);
            if let Some(g) = self.try_lock() {
                self.forget_waiter(&me);
                return g;
            }
            // A waiter unwound at teardown may already hold the wake-up of an unlock: pass it on.
            let unwind = OnUnwind::new(|| {
                if !self.forget_waiter(&me) {
                    self.wake_one();
                }
            });
            let parked = sys::park(None);
            unwind.disarm();
            if !parked {
                // Scheduler teardown (a destructor run while coroutines unwind): no coroutine
                // to park. A wake-up handed to us goes on; then wait without parking.
                if !self.forget_waiter(&me) {
                    self.wake_one();
                }
                return self.lock_at_teardown();
            }
        }
    }

    /// The lock for a destructor run at scheduler teardown, on the worker thread outside any
    /// coroutine. The holder may be a coroutine of this worker that is not unwound yet and can
    /// never release it while we block the thread, so waiting is bounded: on expiry abort with
    /// a clear message instead of hanging shutdown forever.
    fn lock_at_teardown(&self) -> MutexGuard<'_, T> {
        let end = Instant::now() + TEARDOWN_LOCK_WAIT;
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            if Instant::now() >= end {
                eprintln!("{TEARDOWN_DEADLOCK}");
                log::error!("{TEARDOWN_DEADLOCK}");
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Locks if free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock().map(|g| MutexGuard {
            mutex: self,
            guard: Some(g),
        })
    }

    /// Mutable access without locking (the borrow proves exclusivity).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Takes `me` off the queue; false when it was not queued (an unlock popped it to wake).
    fn forget_waiter(&self, me: &Waker) -> bool {
        let mut q = self.waiters.lock();
        let found = q.remove(me);
        self.nwait.store(q.len(), Ordering::SeqCst);
        found
    }

    fn wake_one(&self) {
        fence(Ordering::SeqCst);
        if self.nwait.load(Ordering::SeqCst) == 0 {
            return;
        }
        let w = {
            let mut q = self.waiters.lock();
            let w = q.pop();
            self.nwait.store(q.len(), Ordering::SeqCst);
            w
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.try_lock() {
            Some(g) => f.debug_struct("Mutex").field("data", &&*g).finish(),
            None => f.debug_struct("Mutex").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.guard {
            Some(g) => g,
            None => unreachable!("guard used after drop"),
        }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.guard {
            Some(g) => g,
            None => unreachable!("guard used after drop"),
        }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unlock first, then wake: the woken waiter must find the lock free.
        drop(self.guard.take());
        self.mutex.wake_one();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    use super::super::super::{Config, Scheduler};
    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let end = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn waiter_unwound_at_shutdown_does_not_take_the_wake() {
        let m = Arc::new(Mutex::new(0u32));
        let held = m.lock();
        let s = Scheduler::start(Config {
            threads: 1,
            stack_size: 0,
            ..Config::default()
        })
        .unwrap();
        let m2 = m.clone();
        s.handle().go(move || {
            *m2.lock() += 1;
        });
        wait_for("the coroutine to queue", || m.waiters.lock().len() == 1);
        // Unwinds the coroutine parked in `lock`.
        s.shutdown();
        assert_eq!(m.waiters.lock().len(), 0, "the unwound waiter was removed");
        let (tx, rx) = mpsc::channel();
        let m3 = m.clone();
        std::thread::spawn(move || {
            *m3.lock() += 10;
            tx.send(()).unwrap();
        });
        wait_for("the thread to queue", || {
            m.waiters
                .lock()
                .q
                .iter()
                .any(|w| matches!(w, Waker::Thread(_)))
        });
        drop(held);
        rx.recv_timeout(WAIT)
            .expect("the plain-thread waiter got the lock");
        assert_eq!(*m.lock(), 10);
    }

    #[test]
    fn wake_handed_to_a_waiter_unwound_at_teardown_is_passed_on() {
        let m = Arc::new(Mutex::new(0u32));
        let s = Scheduler::start(Config {
            threads: 1,
            stack_size: 0,
            ..Config::default()
        })
        .unwrap();
        let (held_tx, held) = mpsc::channel();
        let m1 = m.clone();
        s.handle().go(move || {
            let _g = m1.lock();
            held_tx.send(()).unwrap();
            super::super::super::sleep(Duration::MAX);
        });
        held.recv_timeout(WAIT)
            .expect("the first coroutine holds the lock");
        let m2 = m.clone();
        s.handle().go(move || {
            *m2.lock() += 1;
        });
        wait_for("the coroutine to queue", || m.waiters.lock().len() == 1);
        let (tx, rx) = mpsc::channel();
        let m3 = m.clone();
        std::thread::spawn(move || {
            *m3.lock() += 10;
            tx.send(()).unwrap();
        });
        wait_for("the thread to queue", || m.waiters.lock().len() == 2);
        // Unwinds the holder (its unlock wakes the queued coroutine), then that coroutine.
        s.shutdown();
        rx.recv_timeout(WAIT)
            .expect("the plain-thread waiter got the lock");
        assert_eq!(*m.lock(), 10);
    }
}
