//! Synchronisation that parks the calling coroutine, not its thread: an MPMC channel
//! ([`chan`]) and a [`Mutex`]. Both also work from plain threads, which then block.

pub mod chan;
mod mutex;

pub use mutex::{Mutex, MutexGuard};

use std::collections::VecDeque;

use super::task::Waker;

/// Waiters of one condition, kept under the owner's lock; woken one at a time.
#[derive(Default)]
pub(crate) struct WaitQueue {
    q: VecDeque<Waker>,
}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue { q: VecDeque::new() }
    }

    /// Adds a waiter unless it is already queued.
    pub(crate) fn push(&mut self, w: &Waker) {
        if !self.q.iter().any(|x| x.same(w)) {
            self.q.push_back(w.clone());
        }
    }

    /// Removes a waiter (it stopped waiting: got what it wanted, or timed out). False when it
    /// was not queued: a waker already popped it, and a waiter that gives up now must pass
    /// that wake-up on or it is lost.
    pub(crate) fn remove(&mut self, w: &Waker) -> bool {
        match self.q.iter().position(|x| x.same(w)) {
            Some(i) => {
                self.q.remove(i);
                true
            }
            None => false,
        }
    }

    /// A waiter giving up (unwound at teardown): takes it off the queue; if a wake-up was
    /// already handed to it and the condition it waited for still holds (`still_ready`),
    /// returns the next waiter to pass that wake-up on to (woken after the lock is released).
    pub(crate) fn give_up(&mut self, w: &Waker, still_ready: bool) -> Option<Waker> {
        if !self.remove(w) && still_ready {
            self.pop()
        } else {
            None
        }
    }

    /// The longest-waiting waiter, to be woken after the owner's lock is released.
    pub(crate) fn pop(&mut self) -> Option<Waker> {
        self.q.pop_front()
    }

    /// Every waiter.
    pub(crate) fn take_all(&mut self) -> VecDeque<Waker> {
        std::mem::take(&mut self.q)
    }

    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::thread_waker;

    /// Two distinct wakers (each thread has its own).
    fn two() -> (Waker, Waker) {
        let a = std::thread::spawn(thread_waker).join().expect("thread");
        let b = std::thread::spawn(thread_waker).join().expect("thread");
        (a, b)
    }

    #[test]
    fn give_up_passes_a_handed_over_wake_on_only_while_the_condition_holds() {
        let (a, b) = two();
        let mut q = WaitQueue::new();
        // Still queued: just taken off, nothing to pass on (whatever the condition).
        q.push(&a);
        q.push(&b);
        assert!(q.give_up(&a, true).is_none());
        assert_eq!(q.len(), 1);
        // Already popped (its wake-up was handed over) and the condition holds: the next
        // waiter gets it.
        let next = q.give_up(&a, true).expect("passed on");
        assert!(next.same(&b));
        assert_eq!(q.len(), 0);
        // Already popped but the condition no longer holds: nobody is woken.
        q.push(&b);
        assert!(q.give_up(&a, false).is_none());
        assert_eq!(q.len(), 1);
    }
}
