//! The task state machine: the atomic transitions between running, parked, queued and done.
//!
//! Only the home worker resumes a task, so the transitions that happen around a resume
//! (`start_running`, `park`, `yielded`, `finish`) are made by one thread; `wake` may be called
//! from any thread at any time. The invariant this keeps: a task sits in at most one run queue,
//! and a wake is never lost — a wake that arrives while the task runs makes its next `park`
//! fail, so the task is re-queued and re-checks its condition.

use std::sync::atomic::{AtomicU8, Ordering};

const PARKED: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// What a task is doing, as seen by wakers.
#[derive(Debug)]
pub(crate) struct TaskState(AtomicU8);

impl TaskState {
    /// A task that is about to run for the first time.
    pub(crate) fn new_running() -> TaskState {
        TaskState(AtomicU8::new(RUNNING))
    }

    /// Wake-up: returns true when the caller must put the task into its home run queue.
    pub(crate) fn wake(&self) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let next = match cur {
                PARKED => QUEUED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next == QUEUED,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The worker is about to resume the task (it was queued, or is being started).
    ///
    /// A plain store suffices: in the queued state no waker writes the state (`wake` only
    /// moves parked -> queued and running -> notified), and everything a waker published
    /// before queueing the task reached this thread through the run queue or inbox it came
    /// from.
    pub(crate) fn start_running(&self) {
        self.0.store(RUNNING, Ordering::Release);
    }

    /// The task suspended asking to park. Returns false when a wake arrived while it ran: then
    /// the task is queued again and the caller must push it to the run queue.
    pub(crate) fn park(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.0.store(QUEUED, Ordering::Release);
                false
            }
        }
    }

    /// The task yielded: it goes back to the run queue.
    pub(crate) fn yielded(&self) {
        self.0.store(QUEUED, Ordering::Release);
    }

    /// The task returned (or was dropped); later wakes are ignored.
    pub(crate) fn finish(&self) {
        self.0.store(DONE, Ordering::Release);
    }

    /// Whether the task has finished.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.0.load(Ordering::Acquire) == DONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn park_then_wake_queues_once() {
        let s = TaskState::new_running();
        assert!(s.park());
        assert!(s.wake(), "first wake queues");
        assert!(!s.wake(), "second wake is absorbed: already queued");
        s.start_running();
        assert!(s.park());
    }

    #[test]
    fn wake_while_running_makes_park_fail() {
        let s = TaskState::new_running();
        assert!(!s.wake(), "running task is only marked notified");
        assert!(!s.park(), "park must not sleep through the wake");
        // Now queued: further wakes do nothing until it runs again.
        assert!(!s.wake());
        s.start_running();
        assert!(s.park());
    }

    #[test]
    fn yield_and_finish() {
        let s = TaskState::new_running();
        s.yielded();
        assert!(!s.wake(), "queued task is not queued twice");
        s.start_running();
        s.finish();
        assert!(s.is_done());
        assert!(!s.wake(), "finished task is never queued");
    }

    #[test]
    fn concurrent_wakers_queue_exactly_once_per_park() {
        for _ in 0..200 {
            let s = Arc::new(TaskState::new_running());
            assert!(s.park());
            let queued = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (s, q) = (s.clone(), queued.clone());
                    std::thread::spawn(move || {
                        if s.wake() {
                            q.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(queued.load(Ordering::SeqCst), 1);
        }
    }
}
