//! The serving seam between the runtime and a mode: [`Mode`], [`Registration`], [`server_main`].
//!
//! Design notes. The `service_register` hook *returns* what serves its listener (in aio mode a
//! [`Registration`] from `aio::general_register`); [`server_main`] collects the returned values
//! in `-server-service` order and hands them to [`Mode::start_with`]. Nothing is kept in a
//! process-wide registry: two servers started one after the other in one process (tests) never
//! see each other's handlers, and registering after start-up is impossible by construction
//! instead of an error at run time.
//!
//! The common case, one handler for every listener and a drain on softstop, is
//! [`Hooks::serve_every_listener`](super::Hooks::serve_every_listener): `aio::serve` and
//! `coroutine::serve` are that plus [`server_main`].

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use zmaster_core::error::quoted;
use zmaster_pool::Listener;

use super::args;
use super::error::{Error, ErrorKind, Result};
use super::hooks::Hooks;
use super::listeners::ServiceListener;
use super::server::{self, Outcome, Server, Serving};

/// One listener and what serves it: what a `service_register` hook returns for its listener.
/// `H` is the mode's handler (aio: [`zmaster_pool::Handler`]). Dropping it closes the listener.
pub struct Registration<H> {
    listener: Listener,
    handler: H,
}

impl<H> Registration<H> {
    /// Serves `listener` with `handler`.
    pub fn new(listener: Listener, handler: H) -> Self {
        Registration { listener, handler }
    }

    /// The listener to serve.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// The listener and its handler, for the mode to start serving them.
    pub fn into_parts(self) -> (Listener, H) {
        (self.listener, self.handler)
    }
}

impl<H> fmt::Debug for Registration<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("listener", &self.listener.describe())
            .finish_non_exhaustive()
    }
}

impl ServiceListener {
    /// The one listener type of both modes: checks the fd is what [`ServiceListener::kind`]
    /// says and makes it non-blocking.
    ///
    /// # Errors
    /// `ErrorKind::Io` naming the service: the fd is not that kind of listener, or `fcntl`
    /// failed.
    pub fn into_listener(self) -> Result<Listener> {
        let name = self.name;
        Listener::from_fd(self.fd, self.kind).map_err(|e| {
            Error::io(
                format!("set up the listener of service {}", quoted(&name)),
                e,
            )
        })
    }
}

/// What a mode plugs into [`server_main`]. `R` is what the mode's `service_register` hooks
/// return per listener (its [`Registration`]).
pub trait Mode<R> {
    /// The listener type handed to the `service_register` hook.
    type Listener: From<Listener>;
    /// The running machinery (pool, scheduler).
    type Serving: Serving;

    /// Turns a runtime listener into the mode's listener type. The default checks the fd is
    /// what its kind says and makes it non-blocking
    /// ([`ServiceListener::into_listener`]).
    ///
    /// # Errors
    /// The fd cannot be used as that kind of listener.
    fn listener(&mut self, server: &Server, listener: ServiceListener) -> Result<Self::Listener> {
        let _ = server;
        listener.into_listener().map(Into::into)
    }

    /// Starts serving `registered` (what the `service_register` hook returned, in listener
    /// order) with `server.settings().thread_count` threads.
    ///
    /// # Errors
    /// Threads or event queues cannot be created, or nothing was registered.
    fn start_with(&mut self, server: &Server, registered: Vec<R>) -> Result<Self::Serving>;

    /// Called after the serving phase ended (default: drop `serving`).
    fn finish(&mut self, serving: Self::Serving, outcome: Outcome) {
        let _ = (serving, outcome);
    }
}

/// The whole life of a server process for a mode: start from argv, `before_service`,
/// `service_register` per listener (collecting what it returns), `mode.start_with`, serve,
/// drain. Returns the exit status: 0 after a normal end; 1 after a usage error (usage printed
/// to stderr) or a start-up error (one line on stderr and in the log).
pub fn server_main<M, R, I, S>(args: I, hooks: Hooks<M::Listener, R>, mut mode: M) -> ExitCode
where
    M: Mode<R>,
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let ident = zmaster_core::cli::program_name(args.first().map(OsString::as_os_str), "server");
    let fail = |e: &Error| {
        eprintln!("{ident}: {e}");
        if e.kind() == ErrorKind::Usage {
            eprintln!("{}", args::usage(&ident));
        } else if server::logs_elsewhere() {
            log::error!("start-up failed: {e}");
        }
        ExitCode::from(1)
    };
    let mut server = match Server::from_args(args.iter().cloned()) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    let Hooks {
        mut service_register,
        before_service,
        mut before_softstop,
        drain_on_softstop,
    } = hooks;
    if let Some(hook) = before_service
        && let Err(e) = hook(server.config())
    {
        return fail(&e);
    }
    let listeners = server.take_listeners();
    let services: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}:{}", l.name, l.kind))
        .collect();
    let mut registered = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let (name, kind) = (listener.name.clone(), listener.kind);
        let registration =
            mode.listener(&server, listener)
                .and_then(|l| match &mut service_register {
                    Some(hook) => hook(&name, l, kind),
                    None => Err(Error::new(
                        ErrorKind::Register,
                        format!("no service_register hook for service {}", quoted(&name)),
                    )),
                });
        match registration {
            Ok(r) => registered.push(r),
            Err(e) => return fail(&e),
        }
    }
    let serving = match mode.start_with(&server, registered) {
        Ok(serving) => serving,
        Err(e) => return fail(&e),
    };
    log::info!(
        "serving launch={:?} services={} threads={}",
        server.launch(),
        services.join(","),
        server.settings().thread_count
    );
    // SPEC §6: a before_softstop hook is what makes a softstop drain; drain_on_softstop asks
    // for the drain without code to run.
    if drain_on_softstop && before_softstop.is_none() {
        before_softstop = Some(Box::new(|| ()));
    }
    let outcome = server.run(&serving, before_softstop);
    // Joining the mode's threads must not hang the process forever (a handler stuck in a
    // blocking call or a CPU loop would keep an old generation alive): exit anyway.
    let (finished, watchdog) = std::sync::mpsc::channel::<()>();
    let _ = std::thread::Builder::new()
        .name("zm-exit-watchdog".into())
        .spawn(move || {
            if watchdog.recv_timeout(FINISH_LIMIT).is_err() {
                log::warn!("shutdown still waiting for handlers after {FINISH_LIMIT:?}; exiting");
                std::process::exit(0);
            }
        });
    mode.finish(serving, outcome);
    let _ = finished.send(());
    ExitCode::SUCCESS
}

/// How long `Mode::finish` may take before the process exits regardless.
const FINISH_LIMIT: Duration = Duration::from_secs(5);
