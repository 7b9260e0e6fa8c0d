//! The coroutine mode's plug into the server runtime: `server_main`, `general_register` (the
//! acceptor thread hands each connection to a new coroutine) and `loop_register` (LIB-ZC's
//! style: an accept loop running in a coroutine on the inherited listener).
//!
//! Either way a connection is handed over once and its handler coroutine stays on one scheduler
//! thread. Softstop stops both kinds of accepting at once, then waits for the handler
//! coroutines (counted from accept to handler return) to finish.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use zmaster_pool::{AcceptCallback, Acceptor, Stream};

use super::net::{self, TcpListener, TcpStream, UnixListener, UnixStream};
use super::{Config as SchedConfig, Scheduler};
use crate::runtime::{
    self, Error, ErrorKind, ListenerKind, Mode, Outcome, Result, Server, ServiceListener, Serving,
};

pub use zmaster_pool::Listener;

/// The hooks of a coroutine server: `service_register` receives [`Listener`]s (the inherited or
/// self-bound sockets) to pass to [`general_register`] or [`loop_register`].
pub type Hooks = runtime::Hooks<Listener>;

/// A connection handed to a coroutine handler: TCP or unix, blocking-style I/O that parks the
/// coroutine. `Read`/`Write` are implemented for it and for `&Connection` (so a `BufReader`
/// over `&conn` and writes to `&conn` can be used together).
#[derive(Debug)]
pub enum Connection {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A unix stream connection.
    Unix(UnixStream),
}

impl Connection {
    /// Sets the read timeout (`None`: wait forever); expiry fails a read with `TimedOut`.
    ///
    /// # Errors
    /// As the stream's `set_read_timeout`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_read_timeout(timeout),
            Connection::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the write timeout (`None`: wait forever).
    ///
    /// # Errors
    /// As the stream's `set_write_timeout`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_write_timeout(timeout),
            Connection::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// Shuts down one or both directions.
    ///
    /// # Errors
    /// As `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.shutdown(how),
            Connection::Unix(s) => s.shutdown(how),
        }
    }

    fn from_stream(stream: Stream) -> io::Result<Connection> {
        match stream {
            Stream::Tcp(s) => TcpStream::from_std(s).map(Connection::Tcp),
            Stream::Unix(s) => UnixStream::from_std(s).map(Connection::Unix),
            Stream::Fifo(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "FIFO services are not supported in coroutine mode",
            )),
        }
    }
}

impl Read for &Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => (&*s).read(buf),
            Connection::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => (&*s).write(buf),
            Connection::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Handler = Arc<dyn Fn(Connection) + Send + Sync>;

/// How a registered listener is served.
enum Style {
    /// The acceptor thread accepts; each connection runs `handler` in a new coroutine.
    Acceptor,
    /// An accept loop runs in a coroutine (LIB-ZC's style).
    Loop,
}

/// Registrations since the current server started; `None` once serving began.
static REGISTRY: Mutex<Option<Vec<(Listener, Handler, Style)>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(listener: Listener, handler: Handler, style: Style) -> Result<()> {
    if listener.kind() == zmaster_pool::ListenerKind::Fifo {
        return Err(Error::new(
            ErrorKind::Register,
            format!(
                "{}: FIFO services are not supported in coroutine mode",
                listener.describe()
            ),
        ));
    }
    match lock(&REGISTRY).as_mut() {
        Some(list) => {
            log::debug!("registered listener={}", listener.describe());
            list.push((listener, handler, style));
            Ok(())
        }
        None => Err(Error::new(
            ErrorKind::Register,
            format!(
                "registering {} outside the start-up hooks: listener closed",
                listener.describe()
            ),
        )),
    }
}

/// Serves `listener` from the acceptor thread: each accepted connection runs
/// `handler(connection)` in a new coroutine. Call it from the `service_register` or
/// `before_service` hook.
///
/// # Errors
/// `ErrorKind::Register` after serving started, or for a FIFO listener.
pub fn general_register(
    listener: Listener,
    handler: impl Fn(Connection) + Send + Sync + 'static,
) -> Result<()> {
    register(listener, Arc::new(handler), Style::Acceptor)
}

/// Serves `listener` LIB-ZC style: an accept loop in a coroutine ([`net::accept_loop`]), each
/// connection in a new coroutine on the same scheduler thread as the loop.
///
/// # Errors
/// As [`general_register`].
pub fn loop_register(
    listener: Listener,
    handler: impl Fn(Connection) + Send + Sync + 'static,
) -> Result<()> {
    register(listener, Arc::new(handler), Style::Loop)
}

/// Runs a coroutine server: see [`runtime::server_main`] for the life cycle (argv `MASTER` or
/// `alone`, config, hooks, softstop, detach). `server-thread-count` scheduler threads;
/// `server-coroutine-stack-size` is the default stack. Pass `std::env::args_os()`.
/// Returns the process exit status (1 after a usage or start-up error).
pub fn server_main<I, S>(args: I, hooks: Hooks) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    *lock(&REGISTRY) = Some(Vec::new());
    runtime::server_main(args, hooks, CoroutineMode)
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

/// What a running coroutine server counts: handler coroutines and live accept loops.
struct Counts {
    active: Arc<Active>,
    loops: Arc<Active>,
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

/// Starts `net::accept_loop` on `listener` in a coroutine; each connection becomes
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
    // counted by then, so a softstop that waits for the loops cannot miss one.
    let live = counts.loops.enter();
    handle.go(move || {
        net::accept_loop(&counted, serve);
        drop(live);
    });
}

/// A stoppable coroutine listener of a `loop_register`ed service.
enum LoopListener {
    Tcp(Arc<TcpListener>),
    Unix(Arc<UnixListener>),
}

struct CoroutineMode;

impl Mode for CoroutineMode {
    type Listener = Listener;
    type Serving = CoroutineServing;

    fn listener(&mut self, _server: &Server, listener: ServiceListener) -> Result<Listener> {
        let kind = match listener.kind {
            ListenerKind::Inet => zmaster_pool::ListenerKind::Inet,
            ListenerKind::Unix => zmaster_pool::ListenerKind::Unix,
            ListenerKind::Fifo => zmaster_pool::ListenerKind::Fifo,
        };
        let name = listener.name;
        Listener::from_fd(listener.fd, kind)
            .map_err(|e| Error::io(format!("set up the listener of service {name:?}"), e))
    }

    fn start(&mut self, server: &Server) -> Result<CoroutineServing> {
        let registered = lock(&REGISTRY).take().unwrap_or_default();
        if registered.is_empty() {
            return Err(Error::new(
                ErrorKind::Register,
                "no listener registered: the service_register hook must call \
                 general_register or loop_register",
            ));
        }
        let settings = server.settings();
        let config = SchedConfig {
            threads: settings.thread_count,
            stack_size: settings.coroutine_stack_size,
        };
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
        };
        let active = &counts.active;
        let mut entries: Vec<(Listener, AcceptCallback)> = Vec::new();
        let mut loops = Vec::new();
        for (listener, handler, style) in registered {
            match style {
                Style::Acceptor => {
                    let (handle, active) = (handle.clone(), Arc::clone(active));
                    let callback = move |stream: Stream| match Connection::from_stream(stream) {
                        Ok(conn) => {
                            let (handler, guard) = (Arc::clone(&handler), active.enter());
                            handle.go(move || {
                                let _guard = guard;
                                handler(conn);
                            });
                        }
                        Err(e) => log::warn!("accepted connection dropped: {e}"),
                    };
                    entries.push((listener, Box::new(callback)));
                }
                Style::Loop => {
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
            }
        }
        let acceptor = if entries.is_empty() {
            None
        } else {
            Some(Acceptor::spawn(entries).map_err(|e| Error::io("start the acceptor thread", e))?)
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

fn config_threads(config: &SchedConfig) -> String {
    match config.threads {
        0 => "per-CPU".into(),
        n => n.to_string(),
    }
}

/// The running coroutine machinery, as the runtime sees it.
struct CoroutineServing {
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
}
