//! Coroutine-aware `UnixListener` and `UnixStream` (stream sockets).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::super::reactor::{Dir, Source};

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
    /// Connects to the socket at `path`, parking while connecting.
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
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let pending = super::start_connect(&sock, &SockAddr::unix(path)?)?;
        let stream = UnixStream {
            src: Source::new(net::UnixStream::from(sock)),
        };
        if pending {
            super::wait_connected(&stream.src, timeout, net::UnixStream::take_error, |s| {
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

    /// Shuts down the read, write or both halves.
    ///
    /// # Errors
    /// `shutdown(2)` failed.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.src.get().shutdown(how)
    }

    /// Sets how long a read waits; `None` waits forever.
    ///
    /// # Errors
    /// A zero duration is rejected, as by std.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.src.set_timeout(Dir::Read, t)
    }

    /// Sets how long a write waits; `None` waits forever.
    ///
    /// # Errors
    /// A zero duration is rejected, as by std.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.src.set_timeout(Dir::Write, t)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.src.timeout(Dir::Read)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.src.timeout(Dir::Write)
    }

    /// A second handle to the same connection (a `dup`ed fd with its own readiness and no
    /// timeouts), for example to read in one coroutine and write in another.
    ///
    /// # Errors
    /// `dup` failed.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        UnixStream::from_std(self.src.get().try_clone()?)
    }

    /// Takes the pending socket error (`SO_ERROR`).
    ///
    /// # Errors
    /// `getsockopt` failed.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.src.get().take_error()
    }
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::read(&self.src, buf, |mut s, b| s.read(b))
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::write(&self.src, buf, |mut s, b| s.write(b))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        super::write_vectored(&self.src, bufs, |mut s, b| s.write_vectored(b))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.src.get().as_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.src.get().as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.src.get().as_fd()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.src.get().as_raw_fd()
    }
}

impl std::fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl std::fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}
