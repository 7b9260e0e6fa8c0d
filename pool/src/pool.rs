//! [`Pool`]: an acceptor thread feeding a worker pool, the shape the aio server mode needs.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::acceptor::{AcceptCallback, Acceptor};
use crate::conn::Conn;
use crate::listener::{Listener, Stream};
use crate::workers::Workers;

/// A connection handler: runs on the connection's worker, once per accepted connection, and
/// starts its first operation (typically a read).
pub type Handler = Arc<dyn Fn(&mut Conn) + Send + Sync>;

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
    /// connection is assigned once to the least-loaded worker, where its handler runs.
    /// A FIFO listener's handler is called once with the FIFO's stream.
    ///
    /// # Errors
    /// `workers` is 0, or starting a thread or registering a listener failed.
    pub fn start(workers: usize, listeners: Vec<(Listener, Handler)>) -> io::Result<Pool> {
        let pool = Workers::start(workers)?;
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
        let acceptor = Acceptor::spawn(entries)?;
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
