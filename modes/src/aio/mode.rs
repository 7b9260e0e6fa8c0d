//! The aio mode's plug into the runtime: the registrations the hooks returned, served by a
//! [`Pool`] (the acceptor thread and the worker threads).

use std::time::{Duration, Instant};

use zmaster_pool::{Handler, Pool, PoolConfig, Stall};

use crate::runtime::{Error, ErrorKind, Mode, Outcome, Registration, Result, Server, Serving};

/// The aio [`Mode`]: a [`Pool`] (acceptor + `thread_count` workers) over the registrations.
#[derive(Debug)]
pub(crate) struct AioMode;

impl Mode<Registration<Handler>> for AioMode {
    type Listener = zmaster_pool::Listener;
    type Serving = AioServing;

    fn start_with(
        &mut self,
        server: &Server,
        registered: Vec<Registration<Handler>>,
    ) -> Result<AioServing> {
        if registered.is_empty() {
            return Err(Error::new(ErrorKind::Register, "no listener to serve"));
        }
        let entries: Vec<(zmaster_pool::Listener, Handler)> = registered
            .into_iter()
            .map(|r| {
                log::debug!("registered listener={}", r.listener().describe());
                r.into_parts()
            })
            .collect();
        let threads = server.settings().thread_count;
        let limits = &server.settings().limits;
        let config = PoolConfig::default()
            .with_max_connections(limits.connection_limit())
            .with_max_accepts(limits.accept_budget())
            .with_board(server.board());
        let pool = Pool::start_with(threads, entries, config).map_err(|e| {
            Error::io(
                format!("start the acceptor and {threads} worker threads"),
                e,
            )
        })?;
        Ok(AioServing { pool })
    }

    fn finish(&mut self, serving: AioServing, outcome: Outcome) {
        log::debug!("aio server done outcome={outcome:?}");
        serving.pool.shutdown();
    }
}

/// The running aio machinery, as the runtime sees it.
pub(crate) struct AioServing {
    pool: Pool,
}

impl Serving for AioServing {
    fn stop_accepting(&self) {
        self.pool.stop_accepting();
    }

    fn active_connections(&self) -> usize {
        self.pool.active_connections()
    }

    fn wait_idle(&self, deadline: Instant) -> bool {
        self.pool.wait_idle(Some(deadline))
    }

    fn accepted_total(&self) -> u64 {
        self.pool.accepted_total()
    }

    fn idle_since(&self) -> Option<Instant> {
        self.pool.idle_since()
    }

    fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        self.pool.stalled(timeout)
    }

    fn on_budget_spent(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.pool.on_budget_spent(wake);
    }
}
