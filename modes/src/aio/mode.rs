//! The aio mode's plug into the runtime: registrations, the acceptor and the worker pool.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use zmaster_pool::{Handler, Listener, Pool};

use crate::runtime::{
    Error, ErrorKind, ListenerKind, Mode, Outcome, Result, Server, ServiceListener, Serving,
};

/// Registrations made through `general_register` since the current server started, or
/// `None` once serving began.
static REGISTRY: Mutex<Option<Vec<(Listener, Handler)>>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Vec<(Listener, Handler)>>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn register(listener: Listener, handler: Handler) -> Result<()> {
    match registry().as_mut() {
        Some(list) => {
            log::debug!("registered listener={}", listener.describe());
            list.push((listener, handler));
            Ok(())
        }
        None => Err(Error::new(
            ErrorKind::Register,
            format!(
                "general_register({}) outside the start-up hooks: listener closed",
                listener.describe()
            ),
        )),
    }
}

fn pool_kind(kind: ListenerKind) -> zmaster_pool::ListenerKind {
    match kind {
        ListenerKind::Inet => zmaster_pool::ListenerKind::Inet,
        ListenerKind::Unix => zmaster_pool::ListenerKind::Unix,
        ListenerKind::Fifo => zmaster_pool::ListenerKind::Fifo,
    }
}

/// The aio [`Mode`]: a [`Pool`] (acceptor thread + `thread_count` workers) over the registrations.
#[derive(Debug)]
pub(crate) struct AioMode;

impl AioMode {
    /// Opens the registration window for a new server.
    pub(crate) fn new() -> AioMode {
        *registry() = Some(Vec::new());
        AioMode
    }
}

impl Mode for AioMode {
    type Listener = Listener;
    type Serving = AioServing;

    fn listener(&mut self, _server: &Server, listener: ServiceListener) -> Result<Listener> {
        let name = listener.name;
        Listener::from_fd(listener.fd, pool_kind(listener.kind))
            .map_err(|e| Error::io(format!("set up the listener of service {name:?}"), e))
    }

    fn start(&mut self, server: &Server) -> Result<AioServing> {
        let registered = registry().take().unwrap_or_default();
        if registered.is_empty() {
            return Err(Error::new(
                ErrorKind::Register,
                "no listener registered: the service_register hook must call general_register",
            ));
        }
        let threads = server.settings().thread_count;
        let pool = Pool::start(threads, registered).map_err(|e| {
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
}
