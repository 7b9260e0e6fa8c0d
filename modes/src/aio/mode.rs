//! The aio mode's plug into the runtime: registrations, the acceptor and the worker pool.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use zmaster_pool::{AcceptCallback, Acceptor, Listener, Stream, Workers};

use super::Handler;
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

/// The aio [`Mode`]: pool listeners, an acceptor thread and `thread_count` workers.
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
        let workers = Workers::start(threads)
            .map_err(|e| Error::io(format!("start {threads} worker threads"), e))?;
        let entries: Vec<(Listener, AcceptCallback)> = registered
            .into_iter()
            .map(|(listener, handler)| {
                let pool = workers.handle();
                let callback: AcceptCallback = Box::new(move |stream: Stream| {
                    let handler = Arc::clone(&handler);
                    pool.assign(stream, move |conn| handler(conn));
                });
                (listener, callback)
            })
            .collect();
        let acceptor =
            Acceptor::spawn(entries).map_err(|e| Error::io("start the acceptor thread", e))?;
        Ok(AioServing {
            acceptor,
            workers: Some(workers),
        })
    }

    fn finish(&mut self, mut serving: AioServing, outcome: Outcome) {
        log::debug!("aio server done outcome={outcome:?}");
        serving.acceptor.stop_accepting();
        if let Some(workers) = serving.workers.take() {
            workers.shutdown();
        }
    }
}

/// The running aio machinery, as the runtime sees it.
pub(crate) struct AioServing {
    acceptor: Acceptor,
    workers: Option<Workers>,
}

impl Serving for AioServing {
    fn stop_accepting(&self) {
        self.acceptor.stop_accepting();
    }

    fn active_connections(&self) -> usize {
        self.workers.as_ref().map_or(0, Workers::active_connections)
    }

    fn wait_idle(&self, deadline: Instant) -> bool {
        self.workers
            .as_ref()
            .is_none_or(|w| w.wait_idle(Some(deadline)))
    }
}
