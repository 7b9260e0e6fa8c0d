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

    /// Removes a waiter (it stopped waiting: got what it wanted, or timed out).
    pub(crate) fn remove(&mut self, w: &Waker) {
        if let Some(i) = self.q.iter().position(|x| x.same(w)) {
            self.q.remove(i);
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
