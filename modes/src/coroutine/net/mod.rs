//! Coroutine-aware sockets: TCP and Unix listeners and streams that park the calling coroutine
//! (not the thread) while the kernel has no data or buffer space.
//!
//! Each type wraps the matching `std` socket in non-blocking mode and implements
//! `std::io::Read`/`Write` (also for `&Stream`), so `BufReader`/`BufWriter` work on them.
//! Operations try the syscall first and park only on would-block; a short read marks the
//! socket buffer as drained and a short write marks it as full, so the next operation parks
//! without an extra `EAGAIN` syscall (as tokio does) — unless the peer's shutdown or an error
//! was seen (`EPOLLRDHUP`/`HUP`/`ERR`), in which case the next syscall reports it at once. Used
//! from a plain thread (outside any coroutine) they block that thread with `poll(2)`.
//!
//! The fd is registered with the poller of the worker where it first waits; a stream can be
//! moved to a coroutine on another worker (wake-ups then cross threads) but is fastest used
//! where it was first used. Timeouts (`set_read_timeout`, `set_write_timeout`,
//! `set_accept_timeout`) make operations fail with [`std::io::ErrorKind::TimedOut`]; they are
//! kept per object (a `try_clone` starts without timeouts), not in the kernel socket.

mod accept;
mod tcp;
mod unix;

pub use accept::{ACCEPT_BACKOFF, Accept, accept_loop};
pub use tcp::{TcpListener, TcpStream};
pub use unix::{UnixListener, UnixStream};

use std::io;
use std::time::Duration;

use std::os::fd::AsFd;

use socket2::{SockAddr, Socket};

use super::reactor::{Dir, Source};

/// Starts a non-blocking connect; returns whether it is still in progress.
fn start_connect(sock: &Socket, addr: &SockAddr) -> io::Result<bool> {
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    match sock.connect(addr) {
        Ok(()) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Waits (parking the coroutine, or polling on a plain thread) until a connect started by
/// [`start_connect`] completes, fails or `timeout` passes.
fn wait_connected<S: AsFd>(
    src: &Source<S>,
    timeout: Option<Duration>,
    take_error: impl Fn(&S) -> io::Result<Option<io::Error>>,
    peer: impl Fn(&S) -> io::Result<()>,
) -> io::Result<()> {
    src.set_timeout(Dir::Write, timeout)?;
    let r = src.io(
        Dir::Write,
        |s| match take_error(s)? {
            Some(e) => Err(e),
            None => match peer(s) {
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            },
        },
        |_| false,
    );
    src.set_timeout(Dir::Write, None)?;
    r
}

/// Reads through a source: a short read (some bytes, fewer than asked) marks the socket
/// drained.
///
/// Sound because sockets are registered with `EPOLLRDHUP`: a FIN that arrived together with
/// the last data sets the source's sticky "closed" bit when its event is handled, and a
/// closed source never has its readiness cleared, so the next read returns the EOF instead of
/// waiting for an edge that already came. A FIN arriving after that event is a new edge.
fn read<S: AsFd>(
    src: &Source<S>,
    buf: &mut [u8],
    f: impl Fn(&S, &mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let len = buf.len();
    src.io(Dir::Read, |s| f(s, buf), |&n| n > 0 && n < len)
}

/// Writes through a source: a short write marks the socket buffer full.
fn write<S: AsFd>(
    src: &Source<S>,
    buf: &[u8],
    f: impl Fn(&S, &[u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let len = buf.len();
    src.io(Dir::Write, |s| f(s, buf), |&n| n < len)
}

/// Writes vectored through a source.
fn write_vectored<S: AsFd>(
    src: &Source<S>,
    bufs: &[io::IoSlice<'_>],
    f: impl Fn(&S, &[io::IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<usize> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    src.io(Dir::Write, |s| f(s, bufs), |&n| n < len)
}
