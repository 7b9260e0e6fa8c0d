//! The coroutine mode's API: [`serve`](super::serve) / [`serve_hooks`] for the common case, and LIB-ZC's
//! registrations for the rest: [`general_register`] (the acceptor thread hands each
//! connection to a new coroutine), [`loop_register`] (an accept loop running in a coroutine
//! on the inherited listener) and [`fifo_register`] (a FIFO read on a thread of its own).
//!
//! Each returns a [`Registration`] that the `service_register` hook returns; nothing is kept
//! in a process-wide registry (the runtime hands the registrations to the mode plug,
//! `serving.rs`). A connection is handed over once and its handler coroutine stays on one
//! scheduler thread.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use zmaster_pool::Stream;

use super::net::{TcpStream, UnixStream};
use crate::runtime::{self, Error, ErrorKind, ListenerKind, Result};

pub use zmaster_pool::Listener;

/// The hooks of a coroutine server: `service_register` receives [`Listener`]s (the inherited or
/// self-bound sockets) and returns their [`Registration`] (from [`general_register`],
/// [`loop_register`] or [`fifo_register`]).
pub type Hooks = runtime::Hooks<Listener, Registration>;

/// What serves one listener in coroutine mode: returned by the `*_register` functions,
/// returned in turn by the `service_register` hook. Dropping it closes the listener.
pub type Registration = runtime::Registration<Service>;

/// How a registered listener is served (the handler and the accept style).
pub struct Service {
    pub(super) serve: Serve,
}

pub(super) type Handler = Arc<dyn Fn(Connection) + Send + Sync>;

/// The accept style of a registered listener, with its handler.
pub(super) enum Serve {
    /// The acceptor thread accepts; each connection runs the handler in a new coroutine.
    Acceptor(Handler),
    /// An accept loop runs in a coroutine (LIB-ZC's style).
    Loop(Handler),
    /// A FIFO, handed once to the handler on a thread of its own.
    Fifo(Box<dyn FnOnce(Fifo) + Send>),
}

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

    pub(super) fn from_stream(stream: Stream) -> io::Result<Connection> {
        match stream {
            // Accepted by the pool's acceptor with accept4(SOCK_NONBLOCK): no second ioctl.
            Stream::Tcp(s) => Ok(Connection::Tcp(TcpStream::from_nonblocking_std(s))),
            Stream::Unix(s) => Ok(Connection::Unix(UnixStream::from_nonblocking_std(s))),
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

/// A FIFO service's fd, handed once to a [`fifo_register`] handler. Reads block the handler's
/// thread until data arrives (the fd stays non-blocking: it is shared with the master and the
/// other generations); end of stream once no writer is left.
#[derive(Debug)]
pub struct Fifo {
    fd: OwnedFd,
}

impl Read for Fifo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::read(self.fd.as_fd(), buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
                    match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Fifo {
    pub(super) fn new(fd: OwnedFd) -> Fifo {
        Fifo { fd }
    }
}

fn register(listener: Listener, serve: Serve) -> Result<Registration> {
    let fifo = listener.kind() == ListenerKind::Fifo;
    if fifo != matches!(serve, Serve::Fifo(_)) {
        let (what, instead) = if fifo {
            ("a FIFO", "fifo_register")
        } else {
            ("not a FIFO", "general_register or loop_register")
        };
        return Err(Error::new(
            ErrorKind::Register,
            format!(
                "{} is {what}: in coroutine mode serve it with {instead}",
                listener.describe()
            ),
        ));
    }
    Ok(Registration::new(listener, Service { serve }))
}

/// Serves `listener` from the acceptor thread: each accepted connection runs
/// `handler(connection)` in a new coroutine. Return the result from the `service_register`
/// hook.
///
/// # Errors
/// `ErrorKind::Register` for a FIFO listener (use [`fifo_register`]).
pub fn general_register(
    listener: Listener,
    handler: impl Fn(Connection) + Send + Sync + 'static,
) -> Result<Registration> {
    register(listener, Serve::Acceptor(Arc::new(handler)))
}

/// Serves `listener` LIB-ZC style: an accept loop in a coroutine (`net::accept_loop`), each
/// connection in a new coroutine on the same scheduler thread as the loop.
///
/// # Errors
/// As [`general_register`].
pub fn loop_register(
    listener: Listener,
    handler: impl Fn(Connection) + Send + Sync + 'static,
) -> Result<Registration> {
    register(listener, Serve::Loop(Arc::new(handler)))
}

/// Serves a FIFO listener: `handler(fifo)` runs once, on a thread of its own (a FIFO is not a
/// socket the coroutine reactor serves). It is not an open connection: a softstop does not
/// wait for it, and it ends with the process.
///
/// # Errors
/// `ErrorKind::Register` for a socket listener (use [`general_register`]).
pub fn fifo_register(
    listener: Listener,
    handler: impl FnOnce(Fifo) + Send + 'static,
) -> Result<Registration> {
    register(listener, Serve::Fifo(Box::new(handler)))
}

/// The hooks [`serve`](super::serve) runs with: every listener served by `handler` through
/// [`general_register`], and a softstop drains open connections. Add `before_service` /
/// `before_softstop` to them and pass them to [`server_main`](super::server_main) for more.
pub fn serve_hooks(handler: impl Fn(Connection) + Send + Sync + 'static) -> Hooks {
    let handler: Handler = Arc::new(handler);
    Hooks::serve_every_listener(move |listener| {
        register(listener, Serve::Acceptor(Arc::clone(&handler)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO read waits for data (the fd is non-blocking: EAGAIN, then poll) and ends at EOF.
    #[test]
    fn fifo_reads_wait_for_data_then_end() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let listener = Listener::from_fd(read, ListenerKind::Fifo).expect("non-blocking FIFO");
        let Listener::Fifo(fd) = listener else {
            panic!("a FIFO listener");
        };
        let reader = std::thread::spawn(move || {
            let mut got = String::new();
            Fifo::new(fd).read_to_string(&mut got).map(|_| got)
        });
        nix::unistd::write(&write, b"poke\n").expect("write");
        drop(write);
        assert_eq!(reader.join().expect("reader").expect("read"), "poke\n");
    }

    #[test]
    fn serve_hooks_drain_and_register_every_socket_listener() {
        let hooks = serve_hooks(drop);
        assert!(hooks.drains_on_softstop());
        let mut register = hooks.service_register.expect("a service_register hook");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = tcp.local_addr().expect("addr").to_string();
        let registration = register("svc", Listener::Tcp(tcp), ListenerKind::Inet).expect("ok");
        assert_eq!(registration.listener().describe(), addr);
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        let err = register("f", Listener::Fifo(read), ListenerKind::Fifo).expect_err("a FIFO");
        assert!(err.to_string().contains("fifo_register"), "{err}");
    }
}
