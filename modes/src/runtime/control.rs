//! Softstop, detach and stop_notify: the process-wide control state and the fd-3 watcher thread.
//!
//! Design notes. The master hands every child fd 3, the write end of its *generation pipe*; it
//! keeps the read end and closes it on reload or when it dies. A pipe's write end then reports
//! POLLERR, so the watcher thread polls fd 3 with no requested events (POLLOUT would be ready
//! at once) and a 500 ms timeout, after which it also compares `getppid()` with the pid seen at
//! start (a master killed by SIGKILL reparents us). Either way it calls [`Control::softstop`].
//! fd 4 is the read end of a pipe private to the child: closing it tells the master the child
//! detached (the master starts a replacement). After a detach the watcher stops, so later
//! reloads are ignored.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::unistd::{Pid, getppid};

/// Why the server stops serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// `stop_notify` deadline reached.
    StopNotified,
    /// The master reloaded or died.
    Softstop(&'static str),
    /// `detach_from_master()` was called.
    Detached,
    /// A SPEC §13 limit was reached (`max-use`, `idle`, `memory`, `hang`): detached as well.
    Retired(&'static str),
}

#[derive(Debug, Default)]
struct State {
    softstop: Option<&'static str>,
    detached: bool,
    retired: Option<&'static str>,
    stop_at: Option<Instant>,
    /// Set by [`Control::nudge`]: the main thread should look at the limits now.
    nudged: bool,
}

/// The control state of one running server.
#[derive(Debug)]
pub(crate) struct Control {
    state: Mutex<State>,
    cond: Condvar,
    private_fd: Mutex<Option<OwnedFd>>,
}

/// The control state the free functions act on (the last server started in this process).
static CURRENT: Mutex<Option<Arc<Control>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Control {
    /// A control state owning fd 4 (when under a master), made current for the free functions.
    pub(crate) fn install(private_fd: Option<OwnedFd>) -> Arc<Control> {
        let control = Arc::new(Control {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            private_fd: Mutex::new(private_fd),
        });
        *lock(&CURRENT) = Some(Arc::clone(&control));
        control
    }

    /// Starts a softstop, unless the server detached (later reloads are ignored then).
    pub(crate) fn softstop(&self, reason: &'static str) {
        let mut state = lock(&self.state);
        if state.detached || state.softstop.is_some() {
            return;
        }
        state.softstop = Some(reason);
        self.cond.notify_all();
    }

    /// Closes fd 4 and marks the server detached; false if it already was.
    pub(crate) fn detach(&self) -> bool {
        let mut state = lock(&self.state);
        if state.detached {
            return false;
        }
        if lock(&self.private_fd).is_none() {
            // Not started by a master (`alone`): there is nothing to detach from, and a client
            // must not be able to stop the server this way.
            log::debug!("detach ignored: not running under a master");
            return false;
        }
        state.detached = true;
        drop(lock(&self.private_fd).take());
        self.cond.notify_all();
        true
    }

    /// Retires the server for `reason`: detaches (when under a master, so the master starts
    /// the replacement at once) and ends normal serving, like a detach. False if the server
    /// is already stopping (softstop, or retired before).
    pub(crate) fn retire(&self, reason: &'static str) -> bool {
        let mut state = lock(&self.state);
        if state.softstop.is_some() || state.retired.is_some() {
            return false;
        }
        state.retired = Some(reason);
        if let Some(private) = lock(&self.private_fd).take() {
            state.detached = true;
            drop(private);
        }
        self.cond.notify_all();
        true
    }

    /// Wakes the main thread's limit checks now (a mode saw a limit reached, e.g. the accept
    /// budget of `server-max-use` spent), instead of at their next tick.
    pub(crate) fn nudge(&self) {
        lock(&self.state).nudged = true;
        self.cond.notify_all();
    }

    /// Whether [`nudge`](Control::nudge) was called since the last call; clears it.
    pub(crate) fn take_nudge(&self) -> bool {
        std::mem::take(&mut lock(&self.state).nudged)
    }

    /// Asks the server main to return `after` from now (keeps an earlier request).
    pub(crate) fn stop_notify(&self, after: Duration) {
        let at = Instant::now() + after;
        let mut state = lock(&self.state);
        state.stop_at = Some(state.stop_at.map_or(at, |old| old.min(at)));
        self.cond.notify_all();
    }

    pub(crate) fn is_detached(&self) -> bool {
        lock(&self.state).detached
    }

    pub(crate) fn softstop_started(&self) -> bool {
        lock(&self.state).softstop.is_some()
    }

    /// The `stop_notify` deadline, if one was asked for.
    pub(crate) fn stop_at(&self) -> Option<Instant> {
        lock(&self.state).stop_at
    }

    /// Blocks until something ends normal serving (stop_notify beats softstop beats retire
    /// beats detach).
    pub(crate) fn wait_event(&self) -> Event {
        loop {
            if let Some(event) = self.wait_event_until(None) {
                return event;
            }
            // Woken by a nudge: nobody checks limits here.
            self.take_nudge();
        }
    }

    /// As [`wait_event`](Control::wait_event), giving up (`None`) at `until`.
    pub(crate) fn wait_event_until(&self, until: Option<Instant>) -> Option<Event> {
        let mut state = lock(&self.state);
        loop {
            let now = Instant::now();
            match state.stop_at {
                Some(at) if at <= now => return Some(Event::StopNotified),
                _ => {}
            }
            if let Some(reason) = state.softstop {
                return Some(Event::Softstop(reason));
            }
            if let Some(reason) = state.retired {
                return Some(Event::Retired(reason));
            }
            if state.detached {
                return Some(Event::Detached);
            }
            if state.nudged || until.is_some_and(|u| u <= now) {
                return None;
            }
            let wake = match (state.stop_at, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            state = match wake {
                Some(at) => {
                    self.cond
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .cond
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// Starts the thread that turns "fd 3 reports an error" or "the master is gone" into a softstop.
///
/// The master also sets `PR_SET_PDEATHSIG(SIGHUP)` on its children as a backstop for servers
/// that do not watch fd 3; here SIGHUP is caught (through a self-pipe) and means the same as a
/// closed generation pipe: softstop, not death.
pub(crate) fn spawn_watcher(
    control: Arc<Control>,
    generation: OwnedFd,
    parent: Pid,
) -> std::io::Result<thread::JoinHandle<()>> {
    let hangup = catch_hangup()?;
    thread::Builder::new()
        .name("zm-softstop".into())
        .spawn(move || watch(&control, &generation, hangup, parent))
}

/// The read end of the SIGHUP self-pipe; it lives as long as the process, so a SIGHUP after the
/// watcher stopped (detached) still has somewhere to go.
static HANGUP: OnceLock<UnixStream> = OnceLock::new();

/// Catches SIGHUP from now on (idempotent): call it as early as possible in a child of a
/// master, so the parent-death signal can never kill it outright.
pub(crate) fn catch_hangup() -> std::io::Result<&'static UnixStream> {
    if let Some(hangup) = HANGUP.get() {
        return Ok(hangup);
    }
    let (hangup, notify) = UnixStream::pair()?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, notify)?;
    Ok(HANGUP.get_or_init(|| hangup))
}

fn watch(control: &Control, generation: &OwnedFd, hangup: &UnixStream, parent: Pid) {
    const TICK_MS: u16 = 500;
    loop {
        if control.is_detached() {
            log::debug!("detached: no longer watching the generation pipe");
            return;
        }
        let mut fds = [
            PollFd::new(generation.as_fd(), PollFlags::empty()),
            PollFd::new(hangup.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, TICK_MS) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_)
                if fds[1]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN)) =>
            {
                control.softstop("SIGHUP (the master died)");
                return;
            }
            Ok(_) => {
                let revents = fds[0].revents().unwrap_or(PollFlags::POLLERR);
                if revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                {
                    control.softstop("generation pipe closed (reload or master exit)");
                    return;
                }
            }
            Err(e) => {
                log::error!("poll on the generation pipe (fd 3) failed: {e}; stopping softly");
                control.softstop("generation pipe unusable");
                return;
            }
        }
        if getppid() != parent {
            control.softstop("master process gone");
            return;
        }
    }
}

/// Detaches this server from its master: closes fd 4 (the master starts a replacement), stops
/// accepting, lets open connections finish and then exits; later reloads are ignored.
///
/// Safe to call from any thread, any number of times; returns at once (the server main
/// thread does the rest). Returns false if no server runs or it already detached.
pub fn detach_from_master() -> bool {
    let current = lock(&CURRENT).clone();
    match current {
        Some(control) => {
            let first = control.detach();
            if first {
                log::info!("detaching from the master");
            }
            first
        }
        None => false,
    }
}

/// Makes the server main return `after` from now (at once if zero), open connections or not.
/// An earlier request wins. Safe to call from any thread.
pub fn stop_notify(after: Duration) {
    if let Some(control) = lock(&CURRENT).clone() {
        control.stop_notify(after);
    }
}

/// Whether a softstop began (the master reloaded or died): a handler may use it to close
/// idle keep-alive connections early.
pub fn softstop_started() -> bool {
    lock(&CURRENT)
        .as_ref()
        .is_some_and(|control| control.softstop_started())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_priority_order() {
        let (_reader, private) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let c = Control::install(Some(private));
        assert!(c.detach());
        assert!(!c.detach());
        c.softstop("ignored after detach");
        assert_eq!(c.wait_event(), Event::Detached);
        c.stop_notify(Duration::ZERO);
        assert_eq!(c.wait_event(), Event::StopNotified);
    }

    #[test]
    fn retire_detaches_and_ends_serving_once() {
        let (reader, private) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let c = Control::install(Some(private));
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(c.wait_event_until(Some(soon)), None, "nothing happened yet");
        assert!(c.retire("max-use"));
        assert!(!c.retire("idle"), "retired once");
        assert!(
            c.is_detached(),
            "fd 4 closed: the master starts a replacement"
        );
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&reader, &mut buf), Ok(0), "fd 4 closed");
        assert_eq!(c.wait_event(), Event::Retired("max-use"));
        c.softstop("later reloads are ignored");
        assert_eq!(c.wait_event(), Event::Retired("max-use"));
    }

    #[test]
    fn wait_event_until_waits_for_an_event_or_its_deadline() {
        let c = Control::install(None);
        c.stop_notify(Duration::from_secs(3600));
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            c.wait_event_until(Some(soon)),
            None,
            "the stop is an hour away"
        );
        // The retire comes from another thread, most likely while this one already waits.
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || c2.retire("hang"));
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            c.wait_event_until(Some(later)),
            Some(Event::Retired("hang"))
        );
        assert!(t.join().unwrap());
    }

    #[test]
    fn a_nudge_ends_the_wait_early_once() {
        let c = Control::install(None);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || c2.nudge());
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(c.wait_event_until(Some(later)), None);
        assert!(
            Instant::now() < later,
            "woken by the nudge, not the deadline"
        );
        t.join().unwrap();
        assert!(c.take_nudge());
        assert!(!c.take_nudge(), "cleared");
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(c.wait_event_until(Some(soon)), None);
        assert!(
            Instant::now() >= soon,
            "no nudge left: waited for the deadline"
        );
    }

    #[test]
    fn retire_without_a_master_still_ends_serving() {
        let c = Control::install(None);
        assert!(c.retire("idle"));
        assert!(!c.is_detached());
        assert_eq!(c.wait_event(), Event::Retired("idle"));
        let c = Control::install(None);
        c.softstop("reload");
        assert!(!c.retire("idle"), "already stopping");
    }

    #[test]
    fn detach_is_ignored_without_a_master() {
        let c = Control::install(None);
        assert!(!c.detach());
        assert!(!c.is_detached());
    }

    #[test]
    fn watcher_softstops_when_the_read_end_closes() {
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let c = Control::install(None);
        let watcher = spawn_watcher(Arc::clone(&c), writer, getppid()).unwrap();
        drop(reader);
        assert!(matches!(c.wait_event(), Event::Softstop(_)));
        watcher.join().unwrap();
    }

    #[test]
    fn stop_notify_wakes_a_waiter() {
        let c = Control::install(None);
        let c2 = Arc::clone(&c);
        let t = thread::spawn(move || c2.wait_event());
        c.stop_notify(Duration::from_millis(10));
        assert_eq!(t.join().unwrap(), Event::StopNotified);
    }
}
