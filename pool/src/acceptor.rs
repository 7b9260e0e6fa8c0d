//! The acceptor thread: level-triggered epoll over the listeners, batched `accept4`,
//! back-off on descriptor exhaustion, and a synchronous `stop_accepting`.
//!
//! Design notes:
//! - One thread (`zm-acceptor`) owns every listener. Readiness comes from a raw epoll
//!   instance ([`Reactor`], the workers' primitive) in level mode, so a listener that is not
//!   drained (batch cap reached) is simply reported again; no re-arm syscalls. Not
//!   `polling::Poller`: its `wait` adds four syscalls (timerfd arm and re-arm, eventfd read
//!   and re-arm) to every wake-up, i.e. to every accepted connection when they come one at
//!   a time. Wake-ups (stop, limit release) go through the reactor's eventfd [`Waker`].
//! - Per readiness event the thread accepts until `EAGAIN` (at most [`BATCH`] at a time).
//! - Listeners are not registered with `EPOLLEXCLUSIVE` (`reactor::LISTEN_FLAGS` says why):
//!   every sibling process's acceptor blocked on a shared listener is woken per connection.
//! - With a board (`board.rs`, set on the gate: the master's `ZM_BOARD`) and several CPUs,
//!   the thread leaves a waiting connection to a sibling process holding clearly fewer
//!   connections: it sleeps a few short rounds while the rule says so and the connection
//!   waits.
//! - Before blocking, the thread yields and polls a few rounds (`spin.rs`):
//!   under a stream of short connections the next one usually completes while it yields,
//!   which saves a sleep and a wake-up per connection (issue 15: 44-53 -> 36-40 µs of
//!   server CPU per connection, 2 CPUs, connect-per-request load).
//! - `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM`: the listener's interest is switched off for
//!   [`PAUSE`] (the poll timeout doubles as the timer), with one warning per second at most,
//!   so a process out of descriptors neither spins nor dies. Transient errors
//!   (`ECONNABORTED`, `EINTR`, `EPROTO`, `EPERM`, network-down family) are skipped.
//! - Connection limit (`server-max-connections`, [`Acceptor::spawn_with_gate`]): when the
//!   [`ConnGate`] is at its limit after a delivery, every listener's interest is switched
//!   off, so new connections stay in the kernel's backlog (shared with sibling processes,
//!   which take them) instead of being accepted here. A [`LimitWaiter`] makes the release
//!   that brings the count below the limit wake the epoll wait; the thread then switches the
//!   listeners back on. No polling, no timer.
//! - `stop_accepting` sets a flag, wakes the thread and waits on a condition variable until
//!   the thread has deleted every listener from its epoll and closed it, so when it
//!   returns the kernel already routes new connections to other processes.

mod entry;

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollEvent;
use parking_lot::{Condvar, Mutex};

use crate::gate::{ConnGate, LimitWaiter};
use crate::listener::{Listener, Stream, set_nonblocking};
use crate::reactor::{Reactor, WAKER_KEY, Waker};
use crate::spin::IdleSpin;

/// The callback the acceptor runs (on its own thread) for each accepted connection.
pub type AcceptCallback = Box<dyn FnMut(Stream) + Send>;

/// Most connections accepted from one listener per readiness event.
const BATCH: usize = 256;
/// How long a listener stays paused after a resource-exhaustion accept error.
const PAUSE: Duration = Duration::from_millis(100);
/// Least time between two warnings about the same listener.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// Least time between two log lines saying the connection limit was reached.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);
/// Readiness events fetched per `epoll_wait`.
const EVENTS: usize = 64;

thread_local! {
    /// The `Shared` (as an address) of the acceptor running on this thread, 0 elsewhere.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The acceptor thread. See the module notes; dropping it stops accepting and joins.
pub struct Acceptor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    reactor: Reactor,
    waker: Waker,
    gate: Option<Arc<ConnGate>>,
    stop: AtomicBool,
    closed: Mutex<bool>,
    closed_cv: Condvar,
}

struct Entry {
    listener: Option<Listener>,
    callback: AcceptCallback,
    label: String,
    paused_until: Option<Instant>,
    last_warn: Option<Instant>,
}

/// How an [`Entry::accept_batch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// The backlog is empty (or the batch cap, a stop or an error ended it).
    Drained,
    /// The connection limit is reached.
    Full,
}

impl Acceptor {
    /// Starts the `zm-acceptor` thread over `entries`: each listener with the callback that
    /// receives its accepted connections (non-blocking, close-on-exec; TCP with
    /// `TCP_NODELAY`). A [`Listener::Fifo`] is not polled: a non-blocking duplicate of its
    /// fd is passed once to its callback when the thread starts.
    ///
    /// # Errors
    /// Creating the epoll instance or its eventfd, registering a listener or spawning the thread failed.
    pub fn spawn(entries: Vec<(Listener, AcceptCallback)>) -> io::Result<Acceptor> {
        Acceptor::start(entries, None)
    }

    /// As [`spawn`](Acceptor::spawn), with a connection limit: each callback must count the
    /// connection it receives in `gate` before it returns ([`ConnGate::guard`], or
    /// [`WorkersHandle::assign`](crate::WorkersHandle::assign) on workers sharing the gate)
    /// and release it when the connection closes. While the gate is at its limit the
    /// listeners are not polled (connections wait in the backlog, for a sibling process or
    /// for a release here); the release below the limit wakes this thread.
    ///
    /// # Errors
    /// As [`spawn`](Acceptor::spawn).
    pub fn spawn_with_gate(
        entries: Vec<(Listener, AcceptCallback)>,
        gate: Arc<ConnGate>,
    ) -> io::Result<Acceptor> {
        Acceptor::start(entries, Some(gate))
    }

    fn start(
        entries: Vec<(Listener, AcceptCallback)>,
        gate: Option<Arc<ConnGate>>,
    ) -> io::Result<Acceptor> {
        let waker = Waker::new()?;
        let shared = Arc::new(Shared {
            reactor: Reactor::new(&waker)?,
            waker,
            gate,
            stop: AtomicBool::new(false),
            closed: Mutex::new(false),
            closed_cv: Condvar::new(),
        });
        let mut list = Vec::with_capacity(entries.len());
        for (key, (listener, callback)) in entries.into_iter().enumerate() {
            let label = listener.describe();
            let entry = Entry {
                listener: None,
                callback,
                label,
                paused_until: None,
                last_warn: None,
            };
            list.push(entry);
            if !matches!(listener, Listener::Fifo(_))
                && let Err(e) = shared.reactor.add_level(listener_fd(&listener), key as u64)
            {
                close_all(&shared.reactor, &mut list);
                return Err(io::Error::new(
                    e.kind(),
                    format!("register listener {}: {e}", listener.describe()),
                ));
            }
            list[key].listener = Some(listener);
        }
        let owned = Owned {
            shared: Arc::clone(&shared),
            entries: list,
        };
        let spawned = std::thread::Builder::new()
            .name("zm-acceptor".into())
            .spawn(move || run(owned));
        match spawned {
            Ok(thread) => Ok(Acceptor {
                shared,
                thread: Some(thread),
            }),
            // The closure has been dropped, and with it `Owned`, which deleted and closed
            // every listener.
            Err(e) => Err(io::Error::new(e.kind(), format!("spawn zm-acceptor: {e}"))),
        }
    }

    /// Stops polling and accepting at once and closes every listener fd in this process.
    ///
    /// Returns once the acceptor thread no longer touches the listeners and has closed them
    /// (when called from the acceptor thread itself, i.e. from an accept callback, it only
    /// requests the stop, which happens when the callback returns). Idempotent.
    pub fn stop_accepting(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.shared.waker.signal() {
            log::error!("acceptor: notify failed: {e}");
        }
        if CURRENT.with(Cell::get) == Arc::as_ptr(&self.shared) as usize {
            return;
        }
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return;
        }
        let mut closed = self.shared.closed.lock();
        while !*closed {
            self.shared.closed_cv.wait(&mut closed);
        }
    }

    /// Whether the acceptor is still accepting (no stop requested yet).
    pub fn is_accepting(&self) -> bool {
        !self.shared.stop.load(Ordering::SeqCst)
    }

    /// Stops accepting (if not done yet) and waits for the acceptor thread to end.
    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop_accepting();
            if CURRENT.with(Cell::get) != Arc::as_ptr(&self.shared) as usize
                && thread.join().is_err()
            {
                log::error!("acceptor: thread panicked");
            }
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("accepting", &self.is_accepting())
            .finish()
    }
}

fn listener_fd(l: &Listener) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd;
    l.as_fd()
}

/// Deletes every polled listener from the epoll instance, then closes them all (an inherited
/// listener's open file stays registered while any process holds it, so the delete matters).
fn close_all(reactor: &Reactor, entries: &mut [Entry]) {
    for entry in entries.iter_mut() {
        if let Some(listener) = entry.listener.take() {
            if !matches!(listener, Listener::Fifo(_))
                && let Err(e) = reactor.delete(listener_fd(&listener))
            {
                log::debug!("acceptor: delete {} from epoll: {e}", entry.label);
            }
            drop(listener);
        }
    }
}

/// The listeners and the acceptor's shared state; dropping it (thread end, panic, or a
/// failed spawn) deletes the listeners from the epoll, closes them and wakes
/// `stop_accepting` callers.
struct Owned {
    shared: Arc<Shared>,
    entries: Vec<Entry>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(board) = self.shared.gate.as_deref().and_then(ConnGate::board) {
            board.set_accepting(false);
        }
        close_all(&self.shared.reactor, &mut self.entries);
        log::debug!("acceptor: stopped, listeners closed");
        *self.shared.closed.lock() = true;
        self.shared.closed_cv.notify_all();
    }
}

fn run(mut owned: Owned) {
    let shared = Arc::clone(&owned.shared);
    let entries = &mut owned.entries;
    CURRENT.with(|c| c.set(Arc::as_ptr(&shared) as usize));
    for entry in entries.iter_mut() {
        if let Some(Listener::Fifo(fd)) = &entry.listener {
            match fd
                .try_clone()
                .and_then(|dup| set_nonblocking(listener_fd_of(&dup)).map(|()| dup))
            {
                Ok(dup) => entry.deliver(Stream::Fifo(dup)),
                Err(e) => log::error!("acceptor: duplicate {}: {e}", entry.label),
            }
        }
    }
    let gate = shared.gate.clone();
    // `Some` while the gate is at its limit and the listeners are switched off.
    let mut full: Option<Full<'_>> = None;
    let mut last_limit_log: Option<Instant> = None;
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let mut spin = IdleSpin::new(0);
    let board = gate.as_deref().and_then(ConnGate::board);
    if let Some(board) = board {
        board.set_accepting(true);
    }
    // On one CPU the siblings share it: a balance between them gains nothing (and a yield
    // to a sibling is a context switch), so connections are not left to them there.
    let balance = board.filter(|_| !crate::spin::one_cpu()).map(|b| &**b);
    while !shared.stop.load(Ordering::SeqCst) {
        // Checked after the waiter is registered (see `ConnGate::waiter`): a release that
        // raced with the pause is seen here, else it signalled the waker.
        if full.is_some() && !gate.as_deref().is_some_and(ConnGate::at_limit) {
            full = None;
            if let Some(board) = board {
                board.set_accepting(true);
            }
            log::debug!("acceptor: below the connection limit; accepting again");
            for (key, entry) in entries.iter_mut().enumerate() {
                if entry.paused_until.is_none() {
                    entry.listen(&shared.reactor, key, true);
                }
            }
        }
        // Idle: yield and poll a few rounds before blocking (`spin.rs`): under a connection
        // stream the next connect is often about to complete.
        let mut n = 0;
        if full.is_none() {
            spin.spin(|| {
                n = shared
                    .reactor
                    .wait(&mut events, Some(Duration::ZERO))
                    .unwrap_or(0);
                n > 0
            });
        }
        let n = if n > 0 {
            Ok(n)
        } else {
            // Computed after the spin, which may have taken a while.
            let now = Instant::now();
            let timeout = entries
                .iter()
                .filter_map(|e| e.paused_until)
                .min()
                .map(|t| t.saturating_duration_since(now));
            shared.reactor.wait(&mut events, timeout)
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                log::error!("acceptor: epoll_wait failed: {e}");
                std::thread::sleep(PAUSE);
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        for (key, entry) in entries.iter_mut().enumerate() {
            if entry.paused_until.is_some_and(|t| t <= now) {
                entry.paused_until = None;
                // At the limit it stays off; the limit's resume switches it on.
                if full.is_none() {
                    entry.listen(&shared.reactor, key, true);
                }
            }
        }
        for ev in &events[..n] {
            // Once full, the events of the other listeners wait (level-triggered: they are
            // reported again after the resume).
            if full.is_some() {
                break;
            }
            // The waker (stop, limit release) only ends the wait; its flags are read above.
            if ev.data() == WAKER_KEY {
                continue;
            }
            let key = ev.data() as usize;
            let Some(entry) = entries.get_mut(key).filter(|e| e.paused_until.is_none()) else {
                continue;
            };
            let batch =
                entry.accept_batch(&shared.reactor, key, &shared.stop, gate.as_deref(), balance);
            match batch {
                Batch::Drained => {}
                Batch::Full => {
                    if let Some(gate) = gate.as_deref() {
                        for (key, entry) in entries.iter_mut().enumerate() {
                            entry.listen(&shared.reactor, key, false);
                        }
                        if let Some(board) = board {
                            board.set_accepting(false);
                        }
                        full = Some(Full::new(gate, &shared, &mut last_limit_log));
                    }
                }
            }
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }
    drop(full);
    drop(owned);
    CURRENT.with(|c| c.set(0));
}

/// The acceptor paused at the connection limit: its registration with the gate.
struct Full<'a> {
    _waiter: LimitWaiter<'a>,
}

impl<'a> Full<'a> {
    fn new(gate: &'a ConnGate, shared: &Arc<Shared>, last_log: &mut Option<Instant>) -> Full<'a> {
        let now = Instant::now();
        if gate.budget_spent() {
            // server-max-use: the runtime logs the retirement; nothing will reopen the gate.
            log::debug!(
                "acceptor: accept budget spent after {} connections; listeners paused",
                gate.accepted_total()
            );
        } else if last_log.is_none_or(|t| now.duration_since(t) >= LIMIT_LOG_EVERY) {
            *last_log = Some(now);
            log::info!(
                "connection limit reached max_connections={}; not accepting until one closes \
                 (new connections wait in the listen backlog for another process)",
                gate.max_connections().unwrap_or(usize::MAX)
            );
        } else {
            log::debug!("acceptor: at the connection limit; listeners paused");
        }
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let waiter = gate.waiter(move || {
            if let Some(shared) = weak.upgrade()
                && let Err(e) = shared.waker.signal()
            {
                log::error!("acceptor: notify failed: {e}");
            }
        });
        Full { _waiter: waiter }
    }
}

fn listener_fd_of(fd: &std::os::fd::OwnedFd) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd;
    fd.as_fd()
}
