//! Coroutine-aware `UnixListener` and `UnixStream` (stream sockets).

use std::io;
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::super::reactor::Dir;
use super::super::reactor::source::Source;
use super::super::{context, sys, task};

/// First and longest pause between connect attempts while the listener's backlog is full.
const CONNECT_RETRY_MIN: Duration = Duration::from_millis(1);
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(50);

/// A Unix-domain listener whose `accept` parks the calling coroutine.
pub struct UnixListener {
    src: Source<net::UnixListener>,
}

/// A Unix-domain connection whose reads and writes park the calling coroutine.
pub struct UnixStream {
    src: Source<net::UnixStream>,
}

impl UnixListener {
    /// Binds a listener at `path`.
    ///
    /// # Errors
    /// Binding failed (for example the path exists).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::from_std(net::UnixListener::bind(path)?)
    }

    /// Wraps a std listener (for example one inherited from the master), switching it to
    /// non-blocking mode.
    ///
    /// # Errors
    /// Setting non-blocking mode failed.
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Ok(UnixListener {
            src: Source::new(listener),
        })
    }

    /// Accepts a connection, parking until one arrives (or the accept timeout passes).
    ///
    /// # Errors
    /// The accept failed (`EMFILE`, ...) or timed out (`ErrorKind::TimedOut`).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.src.io(Dir::Read, |l| l.accept(), |_| false)?;
        Ok((UnixStream::from_std(s)?, addr))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// Sets how long `accept` waits; `None` waits forever.
    ///
    /// # Errors
    /// A zero duration is rejected, as by std.
    pub fn set_accept_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.src.set_timeout(Dir::Read, t)
    }

    /// The accept timeout.
    pub fn accept_timeout(&self) -> Option<Duration> {
        self.src.timeout(Dir::Read)
    }

    /// Stops accepting (softstop): the coroutine parked in `accept`, and every later
    /// `accept`, fails with `ErrorKind::ConnectionAborted` ("listener stopped"); callable from
    /// any thread, typically on a listener shared through an `Arc`. The socket stays open
    /// (and the kernel keeps queueing connections) until the listener is dropped.
    pub fn stop(&self) {
        self.src.stop();
    }

    /// Whether [`stop`](Self::stop) was called: an accept loop checks it to tell this
    /// `ConnectionAborted` from a peer's.
    pub fn is_stopped(&self) -> bool {
        self.src.is_stopped()
    }

    /// The bound address.
    ///
    /// # Errors
    /// `getsockname` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }
}

impl UnixStream {
    /// Connects to the socket at `path`, parking while connecting; while the listener's backlog
    /// is full (`EAGAIN`) it retries, pausing 1 ms to 50 ms between attempts.
    ///
    /// # Errors
    /// The connect failed.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        UnixStream::connect_addr(path.as_ref(), None)
    }

    /// Connects to the socket at `path`, failing with `ErrorKind::TimedOut` after `timeout`.
    ///
    /// # Errors
    /// The connect failed or timed out.
    pub fn connect_timeout<P: AsRef<Path>>(path: P, timeout: Duration) -> io::Result<UnixStream> {
        UnixStream::connect_addr(path.as_ref(), Some(timeout))
    }

    fn connect_addr(path: &Path, timeout: Option<Duration>) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut pause = CONNECT_RETRY_MIN;
        let (sock, pending) = loop {
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            match super::start_connect(&sock, &addr) {
                Ok(pending) => break (sock, pending),
                // The listener's backlog is full. Unlike TCP there is no connect in progress
                // and no readiness event announces room: retry after a growing pause.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connect timed out (listener backlog full)",
                        ));
                    }
                    if !sys::in_coroutine() && context::on_worker_thread() {
                        // Scheduler teardown: cannot wait.
                        return Err(task::shutdown_error());
                    }
                    super::super::sleep(left.map_or(pause, |l| l.min(pause)));
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        };
        let stream = UnixStream {
            src: Source::new(net::UnixStream::from(sock)),
        };
        if pending {
            // Only the time left after the backlog retries, not the whole timeout again.
            let rest = match deadline {
                None => timeout,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                    }
                    left => Some(left),
                },
            };
            super::wait_connected(&stream.src, rest, net::UnixStream::take_error, |s| {
                s.peer_addr().map(drop)
            })?;
        }
        Ok(stream)
    }

    /// A connected pair of streams.
    ///
    /// # Errors
    /// `socketpair(2)` failed.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a connected std stream (for example one accepted on an acceptor thread),
    /// switching it to non-blocking mode.
    ///
    /// # Errors
    /// Setting non-blocking mode failed.
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream {
            src: Source::new(stream),
        })
    }

    /// Wraps a connected std stream that is already non-blocking, such as one accepted with
    /// `accept4(SOCK_NONBLOCK)` (the pool's acceptor, see `zmaster_pool::Stream`): it skips
    /// the `ioctl(FIONBIO)` of [`from_std`](Self::from_std), one syscall per connection. A
    /// blocking stream given here would block its whole worker thread on each read or write;
    /// debug builds check.
    pub fn from_nonblocking_std(stream: net::UnixStream) -> UnixStream {
        debug_assert!(
            super::is_nonblocking(&stream),
            "UnixStream::from_nonblocking_std: the stream is blocking"
        );
        UnixStream {
            src: Source::new(stream),
        }
    }

    /// The remote address.
    ///
    /// # Errors
    /// `getpeername` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    /// `getsockname` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.src.get().local_addr()
    }
}

stream_common!(UnixStream);
listener_common!(UnixListener);
