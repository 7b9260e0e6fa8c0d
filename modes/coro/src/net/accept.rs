//! A ready-made accept loop for coroutine listeners (LIB-ZC style: accept in a coroutine on an
//! inherited listener, one coroutine per connection), with the error policy of SPEC §6 and
//! an optional connection limit (`server-max-connections`, [`accept_loop_limited`]).
//!
//! At the limit the loop does not call `accept`: connections wait in the kernel's backlog
//! (where a sibling process may take them). The loop parks with a [`LimitWaiter`]
//! registered on the gate, so the close that brings the count below the limit wakes it.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zmaster_pool::{ConnGate, LimitWaiter};

use super::super::sys;
use super::{TcpListener, TcpStream, UnixListener, UnixStream};

/// How long accepting pauses after `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` (or an unknown error).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A coroutine listener usable with [`accept_loop`].
pub trait Accept: Send + Sync + 'static {
    /// The accepted connection type.
    type Conn: Send + 'static;

    /// Accepts one connection (parks the calling coroutine).
    ///
    /// # Errors
    /// As the listener's `accept`.
    fn accept_conn(&self) -> io::Result<Self::Conn>;

    /// Whether the listener was stopped (`stop`).
    fn stopped(&self) -> bool;
}

impl Accept for TcpListener {
    type Conn = TcpStream;
    fn accept_conn(&self) -> io::Result<TcpStream> {
        self.accept().map(|(c, _)| c)
    }
    fn stopped(&self) -> bool {
        self.is_stopped()
    }
}

impl Accept for UnixListener {
    type Conn = UnixStream;
    fn accept_conn(&self) -> io::Result<UnixStream> {
        self.accept().map(|(c, _)| c)
    }
    fn stopped(&self) -> bool {
        self.is_stopped()
    }
}

/// What to do after an accept error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnError {
    /// The peer gave up or a signal interrupted: accept again at once.
    Retry,
    /// Out of descriptors or memory (or unknown): pause, then accept again.
    Backoff,
}

fn classify(e: &io::Error) -> OnError {
    match e.raw_os_error() {
        Some(
            libc::ECONNABORTED
            | libc::EINTR
            | libc::EPROTO
            | libc::EPERM
            | libc::ECONNRESET
            | libc::ETIMEDOUT
            | libc::EAGAIN,
        ) => OnError::Retry,
        _ if e.kind() == io::ErrorKind::TimedOut => OnError::Retry,
        _ => OnError::Backoff,
    }
}

/// Accepts on `listener` until it is stopped, running `handler(conn)` in a new coroutine for
/// each connection. Call it from a coroutine (for example `handle.go(move || accept_loop(..))`).
///
/// Errors never end the loop: `ECONNABORTED`, `EINTR`, `EPROTO`, `EPERM` and the like are
/// ignored; `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM` and unknown errors pause accepting for
/// [`ACCEPT_BACKOFF`] (the coroutine sleeps, no busy loop) with at most one warning per
/// second. It returns once `listener.stop()` was called.
///
/// # Panics
/// Panics when called outside a coroutine (it spawns with [`go`](crate::go)).
pub fn accept_loop<L, F>(listener: &L, handler: Arc<F>)
where
    L: Accept,
    F: Fn(L::Conn) + Send + Sync + 'static,
{
    run(listener, handler, None);
}

/// As [`accept_loop`], with a connection limit: each accepted connection is counted in
/// `gate` ([`ConnGate::guard`]) until its handler coroutine returns, and while the gate is
/// at its limit the loop does not accept (it parks until a connection counted in `gate`
/// closes; connections wait in the listen backlog, for a sibling process or for this one).
/// Several loops, and an aio acceptor, may share one gate: the limit is per gate.
///
/// A loop parked at the limit notices `listener.stop()` at the next close.
///
/// # Panics
/// As [`accept_loop`].
pub fn accept_loop_limited<L, F>(listener: &L, handler: Arc<F>, gate: &Arc<ConnGate>)
where
    L: Accept,
    F: Fn(L::Conn) + Send + Sync + 'static,
{
    run(listener, handler, Some(gate));
}

fn run<L, F>(listener: &L, handler: Arc<F>, gate: Option<&Arc<ConnGate>>)
where
    L: Accept,
    F: Fn(L::Conn) + Send + Sync + 'static,
{
    let mut last_warn: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        if let Some(gate) = gate
            && gate.at_limit()
            && !wait_below_limit(gate, listener)
        {
            return;
        }
        match listener.accept_conn() {
            Ok(conn) => {
                let h = handler.clone();
                let guard = gate.map(ConnGate::guard);
                super::super::go(move || {
                    let _counted = guard;
                    h(conn);
                });
            }
            Err(_) if listener.stopped() => return,
            Err(e) => match classify(&e) {
                OnError::Retry => log::debug!("coroutine accept: {e} (ignored)"),
                OnError::Backoff => {
                    if last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::warn!(
                            "coroutine accept: {e}; pausing {} ms (suppressed={suppressed})",
                            ACCEPT_BACKOFF.as_millis()
                        );
                        last_warn = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    super::super::sleep(ACCEPT_BACKOFF);
                }
            },
        }
    }
}

/// Parks until `gate` is below its limit; `false` when the loop must end instead (the
/// listener was stopped, or the scheduler is tearing down and nothing can park).
fn wait_below_limit<L: Accept>(gate: &ConnGate, listener: &L) -> bool {
    log::debug!(
        "coroutine accept: at the connection limit max_connections={}; waiting for a close",
        gate.max_connections().unwrap_or(usize::MAX)
    );
    let waker = sys::current_waker();
    let _waiter: LimitWaiter<'_> = gate.waiter(move || waker.wake());
    // Re-checked with the waiter registered: a close before it is seen here, a close after
    // it wakes us.
    while gate.at_limit() {
        if listener.stopped() || !sys::park(None) {
            return false;
        }
    }
    !listener.stopped()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_policy() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(libc::ECONNABORTED)), OnError::Retry);
        assert_eq!(classify(&os(libc::EINTR)), OnError::Retry);
        assert_eq!(classify(&os(libc::EMFILE)), OnError::Backoff);
        assert_eq!(classify(&os(libc::ENFILE)), OnError::Backoff);
        assert_eq!(classify(&os(libc::ENOBUFS)), OnError::Backoff);
        assert_eq!(classify(&io::Error::other("strange")), OnError::Backoff);
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "accept timeout");
        assert_eq!(classify(&timed_out), OnError::Retry);
    }
}
