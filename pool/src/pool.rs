//! [`Pool`]: an acceptor thread feeding a worker pool, the shape the aio server mode needs.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acceptor::{AcceptCallback, Acceptor};
use crate::board::Board;
use crate::conn::Conn;
use crate::gate::ConnGate;
use crate::listener::{Listener, Stream};
use crate::stall::Stall;
use crate::workers::Workers;

/// A connection handler: runs on the connection's worker, once per accepted connection, and
/// starts its first operation (typically a read).
pub type Handler = Arc<dyn Fn(&mut Conn) + Send + Sync>;

/// Options of [`Pool::start_with`] (the default is what [`Pool::start`] uses).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PoolConfig {
    /// `server-max-connections`: at this many open connections the acceptor stops taking
    /// new ones (they wait in the listen backlog, for a sibling process or a close here)
    /// and resumes as soon as one closes. `None` or `Some(0)`: no limit.
    pub max_connections: Option<usize>,
    /// `server-max-use` (with its jitter): after this many accepted connections the acceptor
    /// stops for good (the server retires). `None` or `Some(0)`: no limit.
    pub max_accepts: Option<u64>,
    /// The service's board (the master's `ZM_BOARD`): the acceptor leaves a new connection
    /// to a sibling process that holds clearly fewer ([`crate::board`]). `None`: it takes
    /// every connection it can.
    pub board: Option<Arc<Board>>,
}

impl PoolConfig {
    /// The default options with `max_connections` set.
    pub fn with_max_connections(mut self, max: Option<usize>) -> PoolConfig {
        self.max_connections = max;
        self
    }

    /// These options with `max_accepts` set.
    pub fn with_max_accepts(mut self, max: Option<u64>) -> PoolConfig {
        self.max_accepts = max;
        self
    }

    /// These options with `board` set.
    pub fn with_board(mut self, board: Option<Arc<Board>>) -> PoolConfig {
        self.board = board;
        self
    }
}

/// An acceptor thread over some listeners, feeding a pool of worker threads.
///
/// Dropping it (or [`shutdown`](Pool::shutdown)) stops accepting, closes every connection
/// and joins all threads.
pub struct Pool {
    // Field order matters: the acceptor is dropped (stopped and joined) before the workers.
    acceptor: Acceptor,
    workers: Workers,
}

impl Pool {
    /// Starts `workers` worker threads, then the acceptor over `listeners`; each accepted
    /// connection is assigned once to a worker (about the least loaded, preferring an awake
    /// one: [`WorkersHandle::assign`](crate::WorkersHandle::assign)), where its handler runs.
    /// A FIFO listener's handler is called once with the FIFO's stream.
    ///
    /// # Errors
    /// `workers` is 0, or starting a thread or registering a listener failed.
    pub fn start(workers: usize, listeners: Vec<(Listener, Handler)>) -> io::Result<Pool> {
        Pool::start_with(workers, listeners, PoolConfig::default())
    }

    /// As [`start`](Pool::start), with `config` (the connection limit).
    ///
    /// # Errors
    /// As [`start`](Pool::start).
    pub fn start_with(
        workers: usize,
        listeners: Vec<(Listener, Handler)>,
        config: PoolConfig,
    ) -> io::Result<Pool> {
        let gate = ConnGate::with_limits(config.max_connections, config.max_accepts);
        if let Some(board) = config.board {
            gate.set_board(board);
        }
        let pool = Workers::start_with_gate(workers, Arc::clone(&gate))?;
        let entries = listeners
            .into_iter()
            .map(|(listener, handler)| {
                let handle = pool.handle();
                let callback: AcceptCallback = Box::new(move |stream: Stream| {
                    let handler = Arc::clone(&handler);
                    handle.assign(stream, move |conn| handler(conn));
                });
                (listener, callback)
            })
            .collect();
        // Each callback counts its connection in the gate (in `assign`) before returning.
        let acceptor = Acceptor::spawn_with_gate(entries, gate)?;
        Ok(Pool {
            acceptor,
            workers: pool,
        })
    }

    /// Stops accepting at once and closes the listeners in this process; returns when they
    /// are closed. Open connections are not touched, but FIFO streams are closed (by their
    /// workers, right after this returns) so that only the next generation reads the FIFO.
    /// Idempotent.
    pub fn stop_accepting(&self) {
        self.acceptor.stop_accepting();
        self.workers.handle().close_fifos();
    }

    /// Whether the pool still accepts new connections.
    pub fn is_accepting(&self) -> bool {
        self.acceptor.is_accepting()
    }

    /// Connections accepted and not yet closed.
    pub fn active_connections(&self) -> usize {
        self.workers.active_connections()
    }

    /// Connections accepted since the start (`server-max-use`).
    pub fn accepted_total(&self) -> u64 {
        self.workers.gate().accepted_total()
    }

    /// Runs `wake` once the accept budget ([`PoolConfig::max_accepts`]) is spent; see
    /// [`ConnGate::on_budget_spent`].
    pub fn on_budget_spent(&self, wake: impl Fn() + Send + Sync + 'static) {
        self.workers.gate().on_budget_spent(wake);
    }

    /// When the last connection was accepted, if any was (millisecond precision).
    pub fn last_accept(&self) -> Option<Instant> {
        self.workers.gate().last_accept()
    }

    /// Since when no connection has been open (`server-max-idle`: the start, the last
    /// accept or the last close, whichever is latest); `None` while one is open.
    pub fn idle_since(&self) -> Option<Instant> {
        self.workers.gate().idle_since()
    }

    /// The connection limit, if any.
    pub fn max_connections(&self) -> Option<usize> {
        self.workers.gate().max_connections()
    }

    /// The worker threads busy in one loop turn for longer than `timeout`
    /// (`server-hang-timeout`): a handler stuck in a callback. Idle workers are never listed.
    /// Cheap (one atomic load per worker); call it from a watchdog every second or so.
    pub fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        self.workers.stalled(timeout)
    }

    /// Blocks until no connection is open, or `deadline` passes; `true` if idle.
    /// Typical softstop: `stop_accepting()`, then `wait_idle(Some(deadline))`.
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        self.workers.wait_idle(deadline)
    }

    /// The worker pool (to assign connections accepted elsewhere).
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// Stops accepting, closes every open connection and joins all threads.
    pub fn shutdown(self) {
        let Pool { acceptor, workers } = self;
        acceptor.join();
        workers.shutdown();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("accepting", &self.is_accepting())
            .field("active", &self.active_connections())
            .finish()
    }
}
