//! The coroutine mode's plug into the runtime: the registrations the hooks returned, served
//! on a [`Scheduler`] (acceptor-thread services, accept loops in coroutines, FIFO threads).
//!
//! Softstop stops both kinds of accepting at once, then waits for the handler coroutines
//! (counted from accept to handler return) to finish.

use std::ffi::OsString;
use std::io;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use zmaster_pool::{AcceptCallback, Acceptor, ConnGate, Stall, Stream};

use super::net::{self, TcpListener, UnixListener};
use super::server::{
    Connection, Fifo, Handler, Hooks, Listener, Registration, Serve, Service, serve_hooks,
};
use super::{Config as SchedConfig, Scheduler};
use crate::runtime::{Error, ErrorKind, Mode, Outcome, Result, Server, Serving, Settings};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts handler coroutines from accept to return, for the softstop drain.
#[derive(Default)]
struct Active {
    count: Mutex<usize>,
    idle: Condvar,
}

/// Held by a handler coroutine; dropping it (return, panic or unwinding at shutdown) counts the
/// connection as done.
struct ActiveGuard(Arc<Active>);

impl Active {
    fn enter(self: &Arc<Active>) -> ActiveGuard {
        *lock(&self.count) += 1;
        ActiveGuard(Arc::clone(self))
    }

    /// Blocks until the count is 0 (true) or `deadline` passes (false).
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut count = lock(&self.count);
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self
                .idle
                .wait_timeout(count, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut count = lock(&self.0.count);
        *count -= 1;
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// What a running coroutine server counts: handler coroutines and live accept loops, and the
/// connection gate (`server-max-connections`, accepted total, idle-since) both accept styles
/// share.
struct Counts {
    active: Arc<Active>,
    loops: Arc<Active>,
    gate: Arc<ConnGate>,
}

/// A listener whose accepted connections are counted as active from the moment of accept (the
/// guard travels with the connection into its handler coroutine).
struct Counted<L> {
    inner: Arc<L>,
    active: Arc<Active>,
}

impl<L: net::Accept> net::Accept for Counted<L> {
    type Conn = (L::Conn, ActiveGuard);

    fn accept_conn(&self) -> io::Result<Self::Conn> {
        let conn = self.inner.accept_conn()?;
        Ok((conn, self.active.enter()))
    }

    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
}

/// Starts `net::accept_loop_limited` on `listener` in a coroutine; each connection becomes
/// `handler(wrap(conn))` in its own coroutine.
fn spawn_loop<L: net::Accept>(
    handle: &super::Handle,
    listener: Arc<L>,
    counts: &Counts,
    handler: Handler,
    wrap: fn(L::Conn) -> Connection,
) {
    let counted = Counted {
        inner: listener,
        active: Arc::clone(&counts.active),
    };
    let serve = Arc::new(move |(conn, guard): (L::Conn, ActiveGuard)| {
        let _guard = guard;
        handler(wrap(conn));
    });
    // The loop counts as live until accept_loop returned: every connection it accepted is
    // counted by then, so a softstop that waits for the loops cannot miss one. Our Arc of the
    // listener goes first, so the one stop_accepting drops after the wait closes the socket.
    let live = counts.loops.enter();
    let gate = Arc::clone(&counts.gate);
    handle.go(move || {
        net::accept_loop_limited(&counted, serve, &gate);
        drop(counted);
        drop(live);
    });
}

/// A stoppable coroutine listener of a `loop_register`ed service.
enum LoopListener {
    Tcp(Arc<TcpListener>),
    Unix(Arc<UnixListener>),
}

/// The coroutine [`Mode`]: a scheduler over the registrations.
pub(super) struct CoroutineMode;

impl Mode<Registration> for CoroutineMode {
    type Listener = Listener;
    type Serving = CoroutineServing;

    fn start_with(
        &mut self,
        server: &Server,
        registered: Vec<Registration>,
    ) -> Result<CoroutineServing> {
        if registered.is_empty() {
            return Err(Error::new(
                ErrorKind::Register,
                "no listener registered: the service_register hook must return \
                 general_register, loop_register or fifo_register",
            ));
        }
        let settings = server.settings();
        let config = sched_config(settings);
        let scheduler = Scheduler::start(config).map_err(|e| {
            Error::io(
                format!(
                    "start {} coroutine scheduler threads",
                    config_threads(&config)
                ),
                e,
            )
        })?;
        let handle = scheduler.handle();
        let counts = Counts {
            active: Arc::new(Active::default()),
            loops: Arc::new(Active::default()),
            gate: ConnGate::with_limits(
                settings.limits.connection_limit(),
                settings.limits.accept_budget(),
            ),
        };
        if let Some(board) = server.board() {
            counts.gate.set_board(board);
        }
        let active = &counts.active;
        let mut entries: Vec<(Listener, AcceptCallback)> = Vec::new();
        let mut loops = Vec::new();
        for registration in registered {
            log::debug!("registered listener={}", registration.listener().describe());
            let (listener, Service { serve }) = registration.into_parts();
            match serve {
                Serve::Acceptor(handler) => {
                    let (handle, active) = (handle.clone(), Arc::clone(active));
                    let gate = Arc::clone(&counts.gate);
                    let callback = move |stream: Stream| match Connection::from_stream(stream) {
                        Ok(conn) => {
                            // Counted in the gate before the callback returns (the acceptor
                            // pauses at the limit), released when the handler returns.
                            let guards = (active.enter(), gate.guard());
                            let handler = Arc::clone(&handler);
                            handle.go(move || {
                                let _guards = guards;
                                handler(conn);
                            });
                        }
                        Err(e) => log::warn!("accepted connection dropped: {e}"),
                    };
                    entries.push((listener, Box::new(callback)));
                }
                Serve::Loop(handler) => {
                    let described = listener.describe();
                    let setup = |e| Error::io(format!("set up the accept loop of {described}"), e);
                    let stoppable = match listener {
                        Listener::Tcp(l) => {
                            let l = Arc::new(TcpListener::from_std(l).map_err(setup)?);
                            spawn_loop(&handle, Arc::clone(&l), &counts, handler, Connection::Tcp);
                            LoopListener::Tcp(l)
                        }
                        Listener::Unix(l) => {
                            let l = Arc::new(UnixListener::from_std(l).map_err(setup)?);
                            spawn_loop(&handle, Arc::clone(&l), &counts, handler, Connection::Unix);
                            LoopListener::Unix(l)
                        }
                        Listener::Fifo(_) => continue, // refused at registration
                    };
                    loops.push(stoppable);
                }
                Serve::Fifo(handler) => {
                    let Listener::Fifo(fd) = listener else {
                        continue; // refused at registration
                    };
                    // Not joined: a FIFO has no end while the master holds it open; the
                    // thread ends with the process.
                    thread::Builder::new()
                        .name("zm-fifo".into())
                        .spawn(move || handler(Fifo::new(fd)))
                        .map_err(|e| Error::io("start a FIFO thread", e))?;
                }
            }
        }
        let acceptor = if entries.is_empty() {
            None
        } else {
            Some(
                Acceptor::spawn_with_gate(entries, Arc::clone(&counts.gate))
                    .map_err(|e| Error::io("start the acceptor thread", e))?,
            )
        };
        Ok(CoroutineServing {
            scheduler: Some(scheduler),
            acceptor,
            loops: Mutex::new(loops),
            counts,
        })
    }

    fn finish(&mut self, mut serving: CoroutineServing, outcome: Outcome) {
        log::debug!("coroutine server done outcome={outcome:?}");
        serving.stop_accepting();
        if let Some(acceptor) = serving.acceptor.take() {
            acceptor.join();
        }
        if let Some(scheduler) = serving.scheduler.take() {
            scheduler.shutdown();
        }
    }
}

/// The scheduler settings of a server's per-service keys.
fn sched_config(settings: &Settings) -> SchedConfig {
    SchedConfig {
        threads: settings.thread_count,
        stack_size: settings.coroutine_stack_size,
        pool_stacks: settings.coroutine_stack_pool,
    }
}

fn config_threads(config: &SchedConfig) -> String {
    match config.threads {
        0 => "per-CPU".into(),
        n => n.to_string(),
    }
}

/// The running coroutine machinery, as the runtime sees it.
pub(super) struct CoroutineServing {
    scheduler: Option<Scheduler>,
    acceptor: Option<Acceptor>,
    loops: Mutex<Vec<LoopListener>>,
    counts: Counts,
}

/// How long a softstop waits for stopped accept loops to return.
const LOOP_STOP_LIMIT: Duration = Duration::from_secs(1);

impl Serving for CoroutineServing {
    fn stop_accepting(&self) {
        if let Some(acceptor) = &self.acceptor {
            acceptor.stop_accepting();
        }
        let mut loops = lock(&self.loops);
        if loops.is_empty() {
            return;
        }
        for l in loops.iter() {
            match l {
                LoopListener::Tcp(l) => l.stop(),
                LoopListener::Unix(l) => l.stop(),
            }
        }
        // Synchronous, like the acceptor's: once the loops returned, every connection they
        // accepted is counted. Then close the sockets here.
        if !self
            .counts
            .loops
            .wait_idle(Instant::now() + LOOP_STOP_LIMIT)
        {
            log::warn!("accept loops still running {LOOP_STOP_LIMIT:?} after stop");
        }
        loops.clear();
    }

    fn active_connections(&self) -> usize {
        *lock(&self.counts.active.count)
    }

    fn wait_idle(&self, deadline: Instant) -> bool {
        self.counts.active.wait_idle(deadline)
    }

    fn accepted_total(&self) -> u64 {
        self.counts.gate.accepted_total()
    }

    fn idle_since(&self) -> Option<Instant> {
        self.counts.gate.idle_since()
    }

    fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        self.scheduler
            .as_ref()
            .map_or_else(Vec::new, |s| s.stalled(timeout))
    }

    fn on_budget_spent(&self, wake: Box<dyn Fn() + Send + Sync>) {
        self.counts.gate.on_budget_spent(wake);
    }
}

/// Runs a coroutine server over the process's argv that serves every listener with
/// `handler`: `handler(connection)` runs in a new coroutine for each accepted connection. On
/// softstop it stops accepting and lets open connections finish (up to
/// `server-stop-on-softstop-after`, 3600 s when that is 0). Returns the process exit status
/// (1 after a usage or start-up error, e.g. a FIFO service: see [`fifo_register`](super::fifo_register)).
pub fn serve(handler: impl Fn(Connection) + Send + Sync + 'static) -> ExitCode {
    server_main(std::env::args_os(), serve_hooks(handler))
}

/// Runs a coroutine server: see [`crate::runtime::server_main`] for the life cycle (argv `MASTER` or
/// `alone`, config, hooks, softstop, detach). `server-thread-count` scheduler threads;
/// `server-coroutine-stack-size` is the default stack. Pass `std::env::args_os()`.
/// Returns the process exit status (1 after a usage or start-up error).
pub fn server_main<I, S>(args: I, hooks: Hooks) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    crate::runtime::server_main(args, hooks, CoroutineMode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_pool_key_reaches_the_scheduler_config() {
        let mut c = zmaster_core::config::Config::new();
        c.set("server-coroutine-stack-pool", "7");
        c.set("server-coroutine-stack-size", "64k");
        c.set("server-thread-count", "3");
        let config = sched_config(&Settings::from_config(&c).unwrap());
        assert_eq!(
            (config.threads, config.stack_size, config.pool_stacks),
            (3, 64 * 1024, 7)
        );
    }

    #[test]
    fn stop_accepting_closes_a_loop_listener() {
        let scheduler = Scheduler::start(SchedConfig {
            threads: 1,
            stack_size: 0,
            ..SchedConfig::default()
        })
        .unwrap();
        let counts = Counts {
            active: Arc::new(Active::default()),
            loops: Arc::new(Active::default()),
            gate: ConnGate::new(None),
        };
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let handler: Handler = Arc::new(drop);
        spawn_loop(
            &scheduler.handle(),
            Arc::clone(&l),
            &counts,
            handler,
            Connection::Tcp,
        );
        let serving = CoroutineServing {
            scheduler: Some(scheduler),
            acceptor: None,
            loops: Mutex::new(vec![LoopListener::Tcp(l)]),
            counts,
        };
        serving.stop_accepting();
        let refused = std::net::TcpStream::connect(addr).map(drop);
        assert_eq!(
            refused.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionRefused),
            "the listener is closed once stop_accepting returned"
        );
    }
}
