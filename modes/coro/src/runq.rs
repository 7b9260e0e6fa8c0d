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
    /// The last pick resumed a ready coroutine: try new work first next time.
    fresh_turn: bool,
}

impl RunQueue {
    /// An empty queue.
    pub(crate) const fn new() -> RunQueue {
        RunQueue {
            ready: VecDeque::new(),
            tick: 0,
            fresh_turn: false,
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

    /// Picks the next thing to run. Ready coroutines (FIFO) and this worker's own new work
    /// alternate, so a coroutine that spawns and yields sees its children start at once;
    /// other workers' and the global queue are searched when nothing local is left, and first
    /// once every [`FAIR_INTERVAL`] picks so a busy worker still takes new connections.
    pub(crate) fn next<F>(
        &mut self,
        local: &mut dyn FnMut() -> Option<F>,
        global: &mut dyn FnMut() -> Option<F>,
    ) -> Option<Next<F>> {
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(FAIR_INTERVAL)
            && let Some(f) = global()
        {
            return Some(Next::Start(f));
        }
        if std::mem::take(&mut self.fresh_turn)
            && let Some(f) = local()
        {
            return Some(Next::Start(f));
        }
        if let Some(slot) = self.ready.pop_front() {
            self.fresh_turn = true;
            return Some(Next::Resume(slot));
        }
        local().or_else(global).map(Next::Start)
    }
}

/// Finds new work for worker `me` elsewhere: a batch from the global injector, then a batch
/// stolen from a sibling (starting after `me`, round-robin). The batch lands in `local`.
pub(crate) fn find_remote<F>(
    local: &Worker<F>,
    global: &Injector<F>,
    stealers: &[Stealer<F>],
    me: usize,
) -> Option<F> {
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

/// Where a new coroutine about to start on worker `me` should run, given each worker's load
/// (started and not finished, plus placed and not started): `None` to start it here, or a
/// worker whose load is lower by more than one. Started coroutines never move, so a connection
/// stays where it started; placing new ones keeps workers even (an accept loop on one worker
/// would otherwise start most connections there).
pub(crate) fn place(loads: impl Iterator<Item = usize>, me: usize) -> Option<usize> {
    let mut mine = None;
    let mut best: Option<(usize, usize)> = None;
    for (i, l) in loads.enumerate() {
        if i == me {
            mine = Some(l);
        } else if best.is_none_or(|(_, b)| l < b) {
            best = Some((i, l));
        }
    }
    match (mine, best) {
        (Some(m), Some((i, b))) if m > b + 1 => Some(i),
        _ => None,
    }
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

    fn pick(q: &mut RunQueue, local: &mut Vec<&'static str>) -> Option<Next<&'static str>> {
        q.next(&mut || local.pop(), &mut || None)
    }

    #[test]
    fn place_picks_a_clearly_less_loaded_worker() {
        assert_eq!(place([3].into_iter(), 0), None);
        assert_eq!(place([1, 0].into_iter(), 0), None);
        assert_eq!(place([2, 0].into_iter(), 0), Some(1));
        assert_eq!(place([2, 1].into_iter(), 0), None);
        assert_eq!(place([5, 9, 3, 4].into_iter(), 0), Some(2));
        assert_eq!(place([5, 9, 3, 4].into_iter(), 2), None);
        assert_eq!(place([5, 0, 3, 0].into_iter(), 2), Some(1));
    }

    #[test]
    fn ready_and_new_work_alternate() {
        let mut q = RunQueue::new();
        q.push(3);
        q.push(1);
        let mut local = vec!["b", "a"];
        assert_eq!(pick(&mut q, &mut local), Some(Next::Resume(3)));
        assert_eq!(pick(&mut q, &mut local), Some(Next::Start("a")));
        assert_eq!(pick(&mut q, &mut local), Some(Next::Resume(1)));
        assert_eq!(pick(&mut q, &mut local), Some(Next::Start("b")));
        assert_eq!(pick(&mut q, &mut local), None);
        assert!(q.is_empty());
    }

    #[test]
    fn clear_empties_the_ready_queue() {
        let mut q = RunQueue::new();
        assert!(q.is_empty());
        q.push(4);
        q.push(9);
        assert!(!q.is_empty(), "a pushed slot is queued");
        q.clear();
        assert!(q.is_empty());
        assert_eq!(
            pick(&mut q, &mut Vec::new()),
            None,
            "nothing left after clear"
        );
    }

    #[test]
    fn ready_queue_is_fifo_without_new_work() {
        let mut q = RunQueue::new();
        for s in [5, 6, 7] {
            q.push(s);
        }
        let mut none = Vec::new();
        for s in [5, 6, 7] {
            assert_eq!(pick(&mut q, &mut none), Some(Next::Resume(s)));
        }
        assert_eq!(pick(&mut q, &mut none), None);
    }

    #[test]
    fn global_work_is_not_starved_by_a_busy_worker() {
        let mut q = RunQueue::new();
        let mut started = 0;
        let mut global = vec![(); 5];
        for round in 0..1000u32 {
            // A ready coroutine is always present (it keeps yielding).
            if q.is_empty() {
                q.push(round % 7);
            }
            match q.next(&mut || None, &mut || global.pop()) {
                Some(Next::Start(())) => started += 1,
                Some(Next::Resume(slot)) => q.push(slot),
                None => unreachable!(),
            }
        }
        assert_eq!(
            started, 5,
            "every global coroutine got started despite a busy worker"
        );
    }

    #[test]
    fn empty_means_none() {
        let mut q = RunQueue::new();
        for _ in 0..(2 * FAIR_INTERVAL) {
            assert_eq!(q.next(&mut || None::<u8>, &mut || None), None);
        }
    }

    #[test]
    fn remote_work_from_injector_then_siblings() {
        let injector = Injector::new();
        let workers: Vec<Worker<u32>> = (0..3).map(|_| Worker::new_fifo()).collect();
        let stealers: Vec<_> = workers.iter().map(Worker::stealer).collect();
        injector.push(2);
        workers[2].push(3);
        workers[2].push(4);
        assert!(work_available(&injector, &stealers, 0));
        assert_eq!(find_remote(&workers[0], &injector, &stealers, 0), Some(2));
        // Steals from worker 2 (up to half of its queue per call).
        assert_eq!(find_remote(&workers[0], &injector, &stealers, 0), Some(3));
        let next = workers[0]
            .pop()
            .or_else(|| find_remote(&workers[0], &injector, &stealers, 0));
        assert_eq!(next, Some(4));
        assert_eq!(find_remote(&workers[0], &injector, &stealers, 0), None);
        assert!(!work_available(&injector, &stealers, 0));
    }

    #[test]
    fn work_available_sees_siblings_but_not_its_own_queue() {
        let injector = Injector::<u32>::new();
        let workers: Vec<Worker<u32>> = (0..3).map(|_| Worker::new_fifo()).collect();
        let stealers: Vec<_> = workers.iter().map(Worker::stealer).collect();
        assert!(!work_available(&injector, &stealers, 1), "nothing anywhere");
        workers[1].push(1);
        assert!(
            !work_available(&injector, &stealers, 1),
            "its own queue is not remote work"
        );
        assert!(
            work_available(&injector, &stealers, 0),
            "sibling 1 has work"
        );
        assert!(
            work_available(&injector, &stealers, 2),
            "sibling 1 has work"
        );
        workers[1].pop();
        workers[2].push(2);
        assert!(
            work_available(&injector, &stealers, 0),
            "the last sibling counts"
        );
        assert!(!work_available(&injector, &stealers, 2));
        workers[2].pop();
        injector.push(3);
        assert!(work_available(&injector, &stealers, 0), "injector only");
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
                        while let Some(v) = w.pop().or_else(|| find_remote(&w, inj, st, me)) {
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
