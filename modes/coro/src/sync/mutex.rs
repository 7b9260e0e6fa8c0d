//! A mutex whose `lock` parks the calling coroutine (or blocks a plain thread) while another
//! holder has it. The guard may be held across yields and I/O: coroutines never change thread.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use super::super::sys;
use super::super::task::{OnUnwind, Waker};
use super::WaitQueue;

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
            let unwind = OnUnwind::new(|| self.forget_waiter(&me));
            let parked = sys::park(None);
            unwind.disarm();
            if !parked {
                // Scheduler teardown: no coroutine to park, block the thread instead.
                self.forget_waiter(&me);
                return MutexGuard {
                    mutex: self,
                    guard: Some(self.inner.lock()),
                };
            }
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

    fn forget_waiter(&self, me: &Waker) {
        let mut q = self.waiters.lock();
        q.remove(me);
        self.nwait.store(q.len(), Ordering::SeqCst);
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
}
