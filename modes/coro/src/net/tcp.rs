//! Coroutine-aware `TcpListener` and `TcpStream`.

use std::io;
use std::net::{self, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::super::reactor::Dir;
use super::super::reactor::source::Source;

/// A TCP listener whose `accept` parks the calling coroutine.
pub struct TcpListener {
    src: Source<net::TcpListener>,
}

/// A TCP connection whose reads and writes park the calling coroutine.
pub struct TcpStream {
    src: Source<net::TcpStream>,
}

impl TcpListener {
    /// Binds a listener (with `SO_REUSEADDR`, as std does).
    ///
    /// # Errors
    /// Resolving or binding failed.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        TcpListener::from_std(net::TcpListener::bind(addr)?)
    }

    /// Wraps a std listener (for example one inherited from the master), switching it to
    /// non-blocking mode.
    ///
    /// # Errors
    /// Setting non-blocking mode failed.
    pub fn from_std(listener: net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            src: Source::new(listener),
        })
    }

    /// Accepts a connection, parking until one arrives (or the accept timeout passes).
    ///
    /// # Errors
    /// The accept failed (`EMFILE`, ...) or timed out (`ErrorKind::TimedOut`).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.src.io(Dir::Read, |l| l.accept(), |_| false)?;
        Ok((TcpStream::from_std(s)?, addr))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
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

impl TcpStream {
    /// Connects to the first address of `addr` that accepts, parking while connecting.
    ///
    /// # Errors
    /// No address resolved or every connect failed (the last error is returned).
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_addr(&a, None) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to connect to")
        }))
    }

    /// Connects to `addr`, failing with `ErrorKind::TimedOut` after `timeout`.
    ///
    /// # Errors
    /// The connect failed or timed out.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        TcpStream::connect_addr(addr, Some(timeout))
    }

    fn connect_addr(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let sock = Socket::new(
            Domain::for_address(*addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        let pending = super::start_connect(&sock, &(*addr).into())?;
        let stream = TcpStream {
            src: Source::new(net::TcpStream::from(sock)),
        };
        if pending {
            super::wait_connected(&stream.src, timeout, net::TcpStream::take_error, |s| {
                s.peer_addr().map(drop)
            })?;
        }
        Ok(stream)
    }

    /// Wraps a connected std stream (for example one accepted on an acceptor thread),
    /// switching it to non-blocking mode.
    ///
    /// # Errors
    /// Setting non-blocking mode failed.
    pub fn from_std(stream: net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream {
            src: Source::new(stream),
        })
    }

    /// Wraps a connected std stream that is already non-blocking, such as one accepted with
    /// `accept4(SOCK_NONBLOCK)` (the pool's acceptor, see `zmaster_pool::Stream`): it skips
    /// the `ioctl(FIONBIO)` of [`from_std`](Self::from_std), one syscall per connection. A
    /// blocking stream given here would block its whole worker thread on each read or write;
    /// debug builds check.
    pub fn from_nonblocking_std(stream: net::TcpStream) -> TcpStream {
        debug_assert!(
            super::is_nonblocking(&stream),
            "TcpStream::from_nonblocking_std: the stream is blocking"
        );
        TcpStream {
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

    /// Sets `TCP_NODELAY`.
    ///
    /// # Errors
    /// `setsockopt` failed.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.src.get().set_nodelay(on)
    }

    /// Reads `TCP_NODELAY`.
    ///
    /// # Errors
    /// `getsockopt` failed.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.src.get().nodelay()
    }
}

stream_common!(TcpStream);
listener_common!(TcpListener);
