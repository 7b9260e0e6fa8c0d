//! The worker pool: N `zm-worker-N` threads, each with its own epoll reactor, connection
//! slab, timer heap and crossbeam inbox; connections are assigned once and stay put.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::conn::{Conn, Msg, WorkerShared};
use crate::gate::ConnGate;
use crate::listener::Stream;
use crate::reactor::{Reactor, Waker};
use crate::stall::{self, LoopTick, Stall};
use crate::worker::Worker;

struct Shared {
    workers: Vec<Arc<WorkerShared>>,
    next: AtomicUsize,
    gate: Arc<ConnGate>,
    /// The process may run on one CPU only (see [`pick`]).
    one_cpu: bool,
}

/// A pool of worker threads serving [`Conn`]s. Dropping it shuts the workers down.
pub struct Workers {
    handle: WorkersHandle,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable, `Send + Sync` handle to assign connections to a [`Workers`] pool
/// from other threads (for instance from [`Acceptor`](crate::Acceptor) callbacks).
#[derive(Clone)]
pub struct WorkersHandle {
    shared: Arc<Shared>,
}

impl Workers {
    /// Starts `n` worker threads named `zm-worker-0` .. `zm-worker-{n-1}`.
    ///
    /// # Errors
    /// `n` is 0 (`InvalidInput`), or creating an epoll instance, an eventfd or a thread
    /// failed (the threads already started are shut down).
    pub fn start(n: usize) -> io::Result<Workers> {
        Workers::start_with_gate(n, ConnGate::new(None))
    }

    /// As [`start`](Workers::start), counting connections in `gate` (shared with an
    /// acceptor that pauses at its limit, see [`Acceptor::spawn_with_gate`](crate::Acceptor)).
    ///
    /// # Errors
    /// As [`start`](Workers::start).
    pub fn start_with_gate(n: usize, gate: Arc<ConnGate>) -> io::Result<Workers> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "worker count must be at least 1",
            ));
        }
        let mut workers = Vec::with_capacity(n);
        let mut parts = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = crossbeam_channel::unbounded();
            let waker = Waker::new()?;
            let reactor = Reactor::new(&waker)?;
            let shared = Arc::new(WorkerShared {
                index,
                tx,
                waker,
                load: AtomicUsize::new(0),
                tick: LoopTick::new(format!("zm-worker-{index}")),
            });
            workers.push(Arc::clone(&shared));
            parts.push((shared, rx, reactor));
        }
        let handle = WorkersHandle {
            shared: Arc::new(Shared {
                workers,
                next: AtomicUsize::new(0),
                gate: Arc::clone(&gate),
                one_cpu: crate::spin::one_cpu(),
            }),
        };
        let mut pool = Workers {
            handle,
            threads: Vec::with_capacity(n),
        };
        for (shared, rx, reactor) in parts {
            let index = shared.index;
            let gate = Arc::clone(&gate);
            let thread = std::thread::Builder::new()
                .name(format!("zm-worker-{index}"))
                .spawn(move || Worker::new(shared, gate, rx, reactor).run())
                .map_err(|e| io::Error::new(e.kind(), format!("spawn zm-worker-{index}: {e}")))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Hands `stream` to one worker (about the least loaded, see
    /// [`WorkersHandle::assign`]) for good; `init` runs there first
    /// with the new [`Conn`] and starts its first operation. See [`WorkersHandle::assign`].
    pub fn assign(&self, stream: Stream, init: impl FnOnce(&mut Conn) + Send + 'static) {
        self.handle.assign(stream, init);
    }

    /// A handle for assigning from other threads.
    pub fn handle(&self) -> WorkersHandle {
        self.handle.clone()
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.handle.shared.workers.len()
    }

    /// Connections assigned and not yet closed (FIFO streams are not counted).
    pub fn active_connections(&self) -> usize {
        self.handle.active_connections()
    }

    /// Blocks until no connection is open or `deadline` passes; `true` if idle.
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.handle.wait_idle(deadline)
    }

    /// The connection count (and limit) the workers release into.
    pub fn gate(&self) -> &Arc<ConnGate> {
        &self.handle.shared.gate
    }

    /// The worker threads that have been busy in one loop turn (one callback, or a run of
    /// them without returning to `epoll_wait`) for longer than `timeout`: hung handlers.
    /// A worker waiting for events is never listed.
    pub fn stalled(&self, timeout: std::time::Duration) -> Vec<Stall> {
        stall::stalled(self.handle.shared.workers.iter().map(|w| &w.tick), timeout)
    }

    /// Closes every connection, ends the worker threads and waits for them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in &self.handle.shared.workers {
            let _ = w.send(Msg::Shutdown);
        }
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // Shut down from inside a callback: that worker ends after the callback returns.
            if t.thread().id() != me && t.join().is_err() {
                log::error!("worker thread panicked");
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads())
            .field("active", &self.active_connections())
            .finish()
    }
}

impl WorkersHandle {
    /// Hands `stream` to a worker: the least loaded, preferring one that is awake (within
    /// two connections; on one CPU always the first awake one: see `pick`). From then on all the
    /// connection's I/O and callbacks run on that worker; `init` runs there first. If the
    /// pool has shut down, the stream is closed.
    pub fn assign(&self, stream: Stream, init: impl FnOnce(&mut Conn) + Send + 'static) {
        let shared = &self.shared;
        // Counted here, on the caller's thread: an acceptor checking its gate right after
        // this returns sees the new connection.
        let counted = !matches!(stream, Stream::Fifo(_));
        if counted {
            shared.gate.enter();
        }
        let turn = shared.next.fetch_add(1, Ordering::Relaxed);
        let best = pick(&shared.workers, turn, Instant::now(), shared.one_cpu);
        best.load.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Assign {
            stream,
            init: Box::new(init),
            counted,
        };
        if best.send(msg).is_err() {
            log::debug!("assign: worker pool is shut down; closing the connection");
            best.load.fetch_sub(1, Ordering::Relaxed);
            if counted {
                shared.gate.release();
            }
        }
    }

    /// Asks every worker to close its FIFO streams (done asynchronously, in each worker's
    /// next loop turn): after a server stops accepting, a FIFO shared with the next
    /// generation must be read by that generation only.
    pub fn close_fifos(&self) {
        for w in &self.shared.workers {
            let _ = w.send(Msg::CloseFifos);
        }
    }

    /// Connections assigned and not yet closed (FIFO streams are not counted).
    pub fn active_connections(&self) -> usize {
        self.shared.gate.active()
    }

    /// Blocks until no connection is open or `deadline` passes; `true` if idle.
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.shared.gate.wait_idle(deadline)
    }
}

impl std::fmt::Debug for WorkersHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkersHandle")
            .field("active", &self.active_connections())
            .finish()
    }
}

/// How long a worker's loop turn may have lasted for it to count as awake (see [`pick`]): a
/// longer one is busy in a callback (or not getting the CPU). The tick has millisecond
/// resolution, so the bound is 9–10 ms.
const AWAKE_TURN: Duration = Duration::from_millis(10);

/// The worker for a new connection, handing it over without a wake-up where that is free.
/// A worker is *awake* when it is not asleep in `epoll_wait` and its loop turn started less
/// than [`AWAKE_TURN`] before `now` (a longer turn is stuck in a callback, or not getting
/// the CPU).
///
/// - On several CPUs: the least loaded, where a worker that is not awake counts one
///   connection more, and of equals the awake one. So an awake worker takes the connection
///   unless it has more than one more than another; an assignment never makes the spread
///   of the loads exceed two. Remaining ties go round-robin from `turn`.
/// - On one CPU (`one_cpu`), where a second worker adds no CPU, only a sleep and a wake-up
///   (two context switches) per connection, and only worker 0 spins (`spin.rs`): the first
///   awake worker; else the first one asleep; else (all are stuck) the least loaded. So a
///   pool serves from worker 0 as one worker would, and the others take over while it is
///   stuck (the connections accepted in the first 10 ms of a long callback still land on
///   it).
fn pick(
    workers: &[Arc<WorkerShared>],
    turn: usize,
    now: Instant,
    one_cpu: bool,
) -> &Arc<WorkerShared> {
    let n = workers.len();
    let start = turn % n;
    let rank = |w: &WorkerShared| {
        let asleep = w.waker.is_asleep();
        let awake = !asleep && w.tick.busy_for(now).is_none_or(|b| b < AWAKE_TURN);
        let load = w.load.load(Ordering::Relaxed);
        if !one_cpu {
            (
                load.saturating_add(usize::from(!awake)),
                usize::from(!awake),
            )
        } else if awake {
            (0, w.index)
        } else if asleep {
            (1, w.index)
        } else {
            (2, load)
        }
    };
    let mut best = &workers[start];
    let mut best_rank = rank(best);
    for i in 1..n {
        let w = &workers[(start + i) % n];
        let r = rank(w);
        if r < best_rank {
            best = w;
            best_rank = r;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(index: usize, load: usize, asleep: bool) -> Arc<WorkerShared> {
        let (tx, _rx) = crossbeam_channel::unbounded();
        let w = WorkerShared {
            index,
            tx,
            waker: Waker::new().expect("eventfd"),
            load: AtomicUsize::new(load),
            tick: LoopTick::new(format!("test-{index}")),
        };
        // A new waker counts as asleep until its owner's first turn.
        assert!(
            w.waker.is_asleep(),
            "a worker that has not started is not awake"
        );
        if !asleep {
            w.waker.awake();
        }
        Arc::new(w)
    }

    fn picked(workers: &[Arc<WorkerShared>], turn: usize) -> usize {
        pick(workers, turn, Instant::now(), false).index
    }

    fn picked_on_one_cpu(workers: &[Arc<WorkerShared>], turn: usize, now: Instant) -> usize {
        pick(workers, turn, now, true).index
    }

    #[test]
    fn the_least_loaded_worker_wins_asleep_or_not() {
        let ws = [worker(0, 3, false), worker(1, 1, true), worker(2, 3, false)];
        for turn in 0..6 {
            assert_eq!(picked(&ws, turn), 1, "turn {turn}");
        }
        let ws = [
            worker(0, 2, false),
            worker(1, 4, false),
            worker(2, 1, false),
        ];
        for turn in 0..6 {
            assert_eq!(picked(&ws, turn), 2, "turn {turn}");
        }
    }

    #[test]
    fn an_awake_worker_wins_unless_it_has_two_more() {
        let ws = [worker(0, 0, true), worker(1, 0, false), worker(2, 0, true)];
        for turn in 0..6 {
            assert_eq!(picked(&ws, turn), 1, "turn {turn}");
        }
        // One more than a sleeping worker: still the awake one.
        let ws = [worker(0, 1, false), worker(1, 0, true)];
        assert_eq!((picked(&ws, 0), picked(&ws, 1)), (0, 0));
        // Two more: the sleeping one.
        let ws = [worker(0, 2, false), worker(1, 0, true)];
        assert_eq!((picked(&ws, 0), picked(&ws, 1)), (1, 1));
    }

    #[test]
    fn full_ties_go_round_robin() {
        let ws = [worker(0, 2, true), worker(1, 2, true), worker(2, 2, true)];
        let order: Vec<usize> = (0..6).map(|t| picked(&ws, t)).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        let ws = [worker(0, 0, false), worker(1, 0, false)];
        assert_eq!((picked(&ws, 4), picked(&ws, 5)), (0, 1));
        // Equal once sleep is counted, but not equal: the awake one.
        let ws = [worker(0, 1, true), worker(1, 2, false)];
        assert_eq!((picked(&ws, 0), picked(&ws, 1)), (1, 1));
    }

    #[test]
    fn connections_arriving_together_stay_within_two_of_each_other() {
        // Worker 0 awake, 1 and 2 asleep until their first connection wakes them (the
        // wake-up clears the flag, as `Waker::wake` does).
        let ws = [worker(0, 0, false), worker(1, 0, true), worker(2, 0, true)];
        let loads =
            || -> Vec<usize> { ws.iter().map(|w| w.load.load(Ordering::Relaxed)).collect() };
        let mut trail = Vec::new();
        for turn in 0..30 {
            let w = pick(&ws, turn, Instant::now(), false);
            w.load.fetch_add(1, Ordering::Relaxed);
            w.waker.wake();
            let l = loads();
            let spread = l.iter().max().unwrap() - l.iter().min().unwrap();
            assert!(spread <= 2, "turn {turn}: {l:?}");
            trail.push(l);
        }
        // The awake worker takes the second connection too, then the sleepers are woken (the
        // tie between them going round-robin: turn 2 starts at worker 2).
        assert_eq!(trail[1], [2, 0, 0]);
        assert_eq!(trail[2], [2, 0, 1]);
        assert_eq!(loads(), [10, 10, 10]);
    }

    #[test]
    fn on_one_cpu_the_first_awake_worker_takes_every_connection() {
        let t0 = Instant::now();
        let ws = [worker(0, 7, true), worker(1, 9, false), worker(2, 3, false)];
        ws[1].tick.busy(t0);
        ws[2].tick.busy(t0);
        // Awake beats asleep, whatever the loads; of the awake ones, the first.
        let soon = t0 + Duration::from_millis(5);
        for turn in 0..6 {
            assert_eq!(picked_on_one_cpu(&ws, turn, soon), 1, "turn {turn}");
        }
        // Worker 1's turn has lasted over AWAKE_TURN: stuck in a callback; worker 2 started
        // later and is still awake.
        ws[2].tick.busy(t0 + Duration::from_millis(8));
        let later = t0 + AWAKE_TURN + Duration::from_millis(1);
        assert_eq!(picked_on_one_cpu(&ws, 0, later), 2);
        // Both stuck: the sleeper, though more loaded than worker 2.
        let much_later = t0 + Duration::from_millis(30);
        assert_eq!(picked_on_one_cpu(&ws, 0, much_later), 0);
        // An awake worker between turns (tick idle, not asleep yet) counts as awake.
        ws[1].tick.idle();
        assert_eq!(picked_on_one_cpu(&ws, 0, much_later), 1);
    }

    #[test]
    fn on_one_cpu_sleepers_are_woken_first_first_and_stuck_ones_by_load() {
        let t0 = Instant::now();
        let ws = [worker(0, 5, true), worker(1, 0, true)];
        for turn in 0..4 {
            assert_eq!(picked_on_one_cpu(&ws, turn, t0), 0, "turn {turn}");
        }
        let ws = [
            worker(0, 5, false),
            worker(1, 2, false),
            worker(2, 4, false),
        ];
        for w in &ws {
            w.tick.busy(t0);
        }
        let stuck = t0 + Duration::from_millis(50);
        for turn in 0..6 {
            assert_eq!(picked_on_one_cpu(&ws, turn, stuck), 1, "turn {turn}");
        }
    }

    #[test]
    fn on_several_cpus_a_stuck_worker_counts_as_asleep() {
        let t0 = Instant::now();
        // Worker 0 is in a callback that has run for 50 ms; worker 1 sleeps.
        let ws = [worker(0, 1, false), worker(1, 0, true)];
        ws[0].tick.busy(t0);
        let now = t0 + Duration::from_millis(50);
        for turn in 0..4 {
            assert_eq!(pick(&ws, turn, now, false).index, 1, "turn {turn}");
        }
        // Its turn is young: awake, and it wins within one.
        assert_eq!(pick(&ws, 0, t0 + Duration::from_millis(1), false).index, 0);
        // Exactly AWAKE_TURN old (the tick's millisecond, plus the bound): no longer awake.
        let start = crate::stall::from_ms(crate::stall::to_ms(t0));
        assert_eq!(ws[0].tick.busy_for(start + AWAKE_TURN), Some(AWAKE_TURN));
        let just_under = start + AWAKE_TURN - Duration::from_micros(1);
        assert_eq!(pick(&ws, 0, just_under, false).index, 0);
        assert_eq!(pick(&ws, 0, start + AWAKE_TURN, false).index, 1);
    }
}
