//! Run-queue policy: the per-worker ready queue of started coroutines, fairness between ready
//! and not-yet-started work, and where new work is found (local, global injector, stealing).
//!
//! Started coroutines are identified by their slot on the home worker and live only in that
//! worker's ready queue; they never move. Not-yet-started work (`F`, a boxed closure) lives in
//! crossbeam deques and may be taken by any worker. Plain Rust, no syscalls: unit-tested here.

use std::collections::VecDeque;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

/// Every `FAIR_INTERVAL` picks, new work is preferred over ready coroutines so a worker full of
/// busy coroutines still starts new ones (and takes from the injector).
pub(crate) const FAIR_INTERVAL: u32 = 61;

/// What to run next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<F> {
    /// Resume the started coroutine in this slot.
    Resume(u32),
    /// Start this new coroutine.
    Start(F),
}

/// The ready queue of started coroutines on one worker.
#[derive(Debug, Default)]
pub(crate) struct RunQueue {
    ready: VecDeque<u32>,
    tick: u32,
}

impl RunQueue {
    /// An empty queue.
    pub(crate) const fn new() -> RunQueue {
        RunQueue {
            ready: VecDeque::new(),
            tick: 0,
        }
    }

    /// Queues a started coroutine at the back.
    pub(crate) fn push(&mut self, slot: u32) {
        self.ready.push_back(slot);
    }

    /// Whether no started coroutine is ready.
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Removes every queued slot (used at shutdown).
    pub(crate) fn clear(&mut self) {
        self.ready.clear();
    }

    /// Picks the next thing to run: ready coroutines first (FIFO), new work when none is
    /// ready, and new work first once every [`FAIR_INTERVAL`] picks.
    pub(crate) fn next<F>(&mut self, fresh: &mut dyn FnMut() -> Option<F>) -> Option<Next<F>> {
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(FAIR_INTERVAL)
            && let Some(f) = fresh()
        {
            return Some(Next::Start(f));
        }
        if let Some(slot) = self.ready.pop_front() {
            return Some(Next::Resume(slot));
        }
        fresh().map(Next::Start)
    }
}

/// Finds new work for worker `me`: its own deque, then a batch from the global injector, then
/// a batch stolen from a sibling (starting after `me`, round-robin).
pub(crate) fn find_fresh<F>(
    local: &Worker<F>,
    global: &Injector<F>,
    stealers: &[Stealer<F>],
    me: usize,
) -> Option<F> {
    if let Some(f) = local.pop() {
        return Some(f);
    }
    if let Some(f) = retry(|| global.steal_batch_and_pop(local)) {
        return Some(f);
    }
    let n = stealers.len();
    (1..n).find_map(|i| retry(|| stealers[(me + i) % n].steal_batch_and_pop(local)))
}

/// Whether any worker other than `me` has stealable work, or the injector has some.
pub(crate) fn work_available<F>(global: &Injector<F>, stealers: &[Stealer<F>], me: usize) -> bool {
    !global.is_empty()
        || stealers
            .iter()
            .enumerate()
            .any(|(i, s)| i != me && !s.is_empty())
}

fn retry<F>(mut f: impl FnMut() -> Steal<F>) -> Option<F> {
    loop {
        match f() {
            Steal::Success(v) => return Some(v),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_is_fifo_and_preferred() {
        let mut q = RunQueue::new();
        q.push(3);
        q.push(1);
        let mut fresh = || Some("new");
        assert_eq!(q.next(&mut fresh), Some(Next::Resume(3)));
        assert_eq!(q.next(&mut fresh), Some(Next::Resume(1)));
        assert_eq!(q.next(&mut fresh), Some(Next::Start("new")));
        assert!(q.is_empty());
    }

    #[test]
    fn new_work_is_not_starved() {
        let mut q = RunQueue::new();
        let mut started = 0;
        let mut pending = vec![(); 5];
        for round in 0..1000u32 {
            // A ready coroutine is always present (it keeps yielding).
            if q.is_empty() {
                q.push(round % 7);
            }
            let mut fresh = || pending.pop();
            match q.next(&mut fresh) {
                Some(Next::Start(())) => started += 1,
                Some(Next::Resume(slot)) => q.push(slot),
                None => unreachable!(),
            }
        }
        assert_eq!(
            started, 5,
            "every new coroutine got started despite a busy ready queue"
        );
    }

    #[test]
    fn empty_means_none() {
        let mut q = RunQueue::new();
        let mut fresh = || None::<u8>;
        for _ in 0..(2 * FAIR_INTERVAL) {
            assert_eq!(q.next(&mut fresh), None);
        }
    }

    #[test]
    fn find_fresh_order_local_global_steal() {
        let injector = Injector::new();
        let workers: Vec<Worker<u32>> = (0..3).map(|_| Worker::new_fifo()).collect();
        let stealers: Vec<_> = workers.iter().map(Worker::stealer).collect();
        workers[0].push(1);
        injector.push(2);
        workers[2].push(3);
        workers[2].push(4);
        assert!(work_available(&injector, &stealers, 0));
        assert_eq!(find_fresh(&workers[0], &injector, &stealers, 0), Some(1));
        assert_eq!(find_fresh(&workers[0], &injector, &stealers, 0), Some(2));
        // Steals from worker 2 (a batch: the rest lands in worker 0's deque).
        assert_eq!(find_fresh(&workers[0], &injector, &stealers, 0), Some(3));
        let mut rest = Vec::new();
        while let Some(v) = find_fresh(&workers[0], &injector, &stealers, 0) {
            rest.push(v);
        }
        assert_eq!(rest, vec![4]);
        assert!(!work_available(&injector, &stealers, 0));
    }

    #[test]
    fn stealing_spreads_work_across_threads() {
        let injector = Injector::new();
        let workers: Vec<Worker<u32>> = (0..4).map(|_| Worker::new_fifo()).collect();
        let stealers: Vec<_> = workers.iter().map(Worker::stealer).collect();
        for i in 0..1000 {
            injector.push(i);
        }
        let mut seen = std::thread::scope(|s| {
            let handles: Vec<_> = workers
                .into_iter()
                .enumerate()
                .map(|(me, w)| {
                    let (inj, st) = (&injector, &stealers);
                    s.spawn(move || {
                        let mut got = Vec::new();
                        while let Some(v) = find_fresh(&w, inj, st, me) {
                            got.push(v);
                        }
                        got
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..1000).collect::<Vec<_>>(),
            "each item taken exactly once"
        );
    }
}
