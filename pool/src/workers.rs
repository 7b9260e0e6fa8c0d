//! The worker pool: N `zm-worker-N` threads, each with its own epoll reactor, connection
//! slab, timer heap and crossbeam inbox; connections are assigned once and stay put.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

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
                .spawn(move || Worker::new(shared, gate, rx, reactor, n - 1).run())
                .map_err(|e| io::Error::new(e.kind(), format!("spawn zm-worker-{index}: {e}")))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Hands `stream` to one worker (the least loaded) for good; `init` runs there first
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
    /// Hands `stream` to the least-loaded worker (ties: round-robin). From then on all the
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
        let n = shared.workers.len();
        let start = shared.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = &shared.workers[start];
        let mut best_load = best.load.load(Ordering::Relaxed);
        for i in 1..n {
            let w = &shared.workers[(start + i) % n];
            let load = w.load.load(Ordering::Relaxed);
            if load < best_load {
                best = w;
                best_load = load;
            }
        }
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
