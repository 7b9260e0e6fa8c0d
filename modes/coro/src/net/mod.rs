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
//!
//! There is no unbounded read: the streams offer only `Read::read`, which fills at most the
//! caller's buffer, and no line reader of their own. For lines, bound the reader explicitly,
//! e.g. `BufReader::new(&stream).take(max + 1).read_until(b'\n', &mut line)` (as
//! `echo-coroutine` does with `echo-max-line`), and set a read timeout: `read_to_end` or an
//! unbounded `read_line` on a socket lets the peer decide how much memory they use.

/// The parts of a coroutine stream type that do not depend on the socket family: shutdown,
/// timeouts, `try_clone`, `take_error`, `Read`/`Write` (for the value and for `&`), fd access
/// and `Debug`. The type must have a `src: Source<std stream>` field and a `from_std`.
macro_rules! stream_common {
    ($ty:ident) => {
        impl $ty {
            /// Shuts down the read, write or both halves.
            ///
            /// # Errors
            /// `shutdown(2)` failed.
            pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                self.src.get().shutdown(how)
            }

            /// Sets how long a read waits; `None` waits forever.
            ///
            /// # Errors
            /// A zero duration is rejected, as by std.
            pub fn set_read_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.src.set_timeout($crate::reactor::Dir::Read, t)
            }

            /// Sets how long a write waits; `None` waits forever.
            ///
            /// # Errors
            /// A zero duration is rejected, as by std.
            pub fn set_write_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
                self.src.set_timeout($crate::reactor::Dir::Write, t)
            }

            /// The read timeout.
            pub fn read_timeout(&self) -> Option<std::time::Duration> {
                self.src.timeout($crate::reactor::Dir::Read)
            }

            /// The write timeout.
            pub fn write_timeout(&self) -> Option<std::time::Duration> {
                self.src.timeout($crate::reactor::Dir::Write)
            }

            /// A second handle to the same connection (a `dup`ed fd with its own readiness and no
            /// timeouts), for example to read in one coroutine and write in another.
            ///
            /// # Errors
            /// `dup` failed.
            pub fn try_clone(&self) -> std::io::Result<$ty> {
                <$ty>::from_std(self.src.get().try_clone()?)
            }

            /// Takes the pending socket error (`SO_ERROR`).
            ///
            /// # Errors
            /// `getsockopt` failed.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.src.get().take_error()
            }
        }

        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                $crate::net::read(&self.src, buf, |mut s, b| std::io::Read::read(&mut s, b))
            }
        }

        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::io::Read::read(&mut &*self, buf)
            }
        }

        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                $crate::net::write(&self.src, buf, |mut s, b| std::io::Write::write(&mut s, b))
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                $crate::net::write_vectored(&self.src, bufs, |mut s, b| {
                    std::io::Write::write_vectored(&mut s, b)
                })
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::io::Write::write(&mut &*self, buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                std::io::Write::write_vectored(&mut &*self, bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        // The fd access and `Debug` are the same as a listener's.
        listener_common!($ty);
    };
}

/// The fd access and `Debug` of a coroutine socket type (a `src: Source<std socket>`): every
/// listener, and every stream through `stream_common`.
macro_rules! listener_common {
    ($ty:ident) => {
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(self.src.get())
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(self.src.get())
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("fd", &std::os::fd::AsRawFd::as_raw_fd(self))
                    .finish()
            }
        }
    };
}

mod accept;
mod tcp;
mod unix;

pub use accept::{ACCEPT_BACKOFF, Accept, accept_loop, accept_loop_limited};
pub use tcp::{TcpListener, TcpStream};
pub use unix::{UnixListener, UnixStream};
/// The connection count and limit an accept loop shares with others (the aio pool's type).
pub use zmaster_pool::{ConnGate, ConnGuard};

use std::io;
use std::time::Duration;

use std::os::fd::AsFd;

use socket2::{SockAddr, Socket};

use super::reactor::Dir;
use super::reactor::source::Source;

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
