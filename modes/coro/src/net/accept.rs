//! A ready-made accept loop for coroutine listeners (LIB-ZC style: accept in a coroutine on an
//! inherited listener, one coroutine per connection), with the error policy of SPEC §6.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let mut last_warn: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept_conn() {
            Ok(conn) => {
                let h = handler.clone();
                super::super::go(move || h(conn));
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
