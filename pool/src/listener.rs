//! Listening sockets handed to the acceptor, and the accepted connections it hands out.

use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::SFlag;
use socket2::SockRef;
use zmaster_core::protocol::ListenerKind;

/// A bound, listening, non-blocking endpoint owned by an [`Acceptor`](crate::Acceptor).
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix stream listener.
    Unix(UnixListener),
    /// A FIFO: never accepted on; its fd is handed once to the callback as a [`Stream::Fifo`].
    Fifo(OwnedFd),
}

impl Listener {
    /// Wraps an inherited (or self-bound) listening fd and puts it in non-blocking mode.
    ///
    /// # Errors
    /// `fd` is not what `kind` says (`InvalidInput`: not a listening inet / unix stream
    /// socket, or not a FIFO), or the `fcntl` that sets `O_NONBLOCK` failed.
    pub fn from_fd(fd: OwnedFd, kind: ListenerKind) -> io::Result<Listener> {
        check_kind(&fd, kind)?;
        set_nonblocking(fd.as_fd())?;
        Ok(match kind {
            ListenerKind::Inet => Listener::Tcp(TcpListener::from(fd)),
            ListenerKind::Unix => Listener::Unix(UnixListener::from(fd)),
            ListenerKind::Fifo => Listener::Fifo(fd),
        })
    }

    /// The kind of this listener.
    pub fn kind(&self) -> ListenerKind {
        match self {
            Listener::Tcp(_) => ListenerKind::Inet,
            Listener::Unix(_) => ListenerKind::Unix,
            Listener::Fifo(_) => ListenerKind::Fifo,
        }
    }

    /// A short human-readable name for log lines (`127.0.0.1:8080`, `/run/x.sock`, `fifo fd 7`).
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => a.to_string(),
                Err(_) => format!("tcp fd {}", l.as_raw_fd()),
            },
            Listener::Unix(l) => match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            {
                Some(p) => p,
                None => format!("unix fd {}", l.as_raw_fd()),
            },
            Listener::Fifo(fd) => format!("fifo fd {}", fd.as_raw_fd()),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
            Listener::Fifo(fd) => fd.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// An accepted connection (non-blocking, close-on-exec), or the read end of a FIFO listener.
pub enum Stream {
    /// A TCP connection (`TCP_NODELAY` is set by the acceptor).
    Tcp(TcpStream),
    /// A unix stream connection.
    Unix(UnixStream),
    /// A duplicate of a FIFO listener's fd, non-blocking.
    Fifo(OwnedFd),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Stream::Unix(s) => f.debug_tuple("Unix").field(s).finish(),
            Stream::Fifo(fd) => f.debug_tuple("Fifo").field(fd).finish(),
        }
    }
}

impl Stream {
    /// Reads what is available into `buf` (non-blocking: `WouldBlock` when nothing is).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Fifo(fd) => nix::unistd::read(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }

    /// Writes as much of `buf` as the kernel takes now, without raising `SIGPIPE`.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => SockRef::from(s).send_with_flags(buf, libc::MSG_NOSIGNAL),
            Stream::Unix(s) => SockRef::from(s).send_with_flags(buf, libc::MSG_NOSIGNAL),
            Stream::Fifo(fd) => nix::unistd::write(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }

    /// Shuts down the write half (sends FIN); a no-op on FIFOs.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Fifo(_) => Ok(()),
        }
    }

    /// The kind of listener this stream came from.
    pub fn kind(&self) -> ListenerKind {
        match self {
            Stream::Tcp(_) => ListenerKind::Inet,
            Stream::Unix(_) => ListenerKind::Unix,
            Stream::Fifo(_) => ListenerKind::Fifo,
        }
    }

    /// A short description of the peer for log lines.
    pub fn describe_peer(&self) -> String {
        match self {
            Stream::Tcp(s) => match s.peer_addr() {
                Ok(a) => a.to_string(),
                Err(_) => format!("tcp fd {}", s.as_raw_fd()),
            },
            Stream::Unix(s) => format!("unix fd {}", s.as_raw_fd()),
            Stream::Fifo(fd) => format!("fifo fd {}", fd.as_raw_fd()),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Fifo(fd) => fd.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

/// Checks that `fd` is a listening socket of the right family, or a FIFO.
fn check_kind(fd: &OwnedFd, kind: ListenerKind) -> io::Result<()> {
    let wrong = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {} is not {what}", fd.as_raw_fd()),
        )
    };
    match kind {
        ListenerKind::Fifo => {
            let st = nix::sys::stat::fstat(fd.as_fd()).map_err(io::Error::from)?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
                return Err(wrong("a FIFO"));
            }
        }
        ListenerKind::Inet | ListenerKind::Unix => {
            let sock = SockRef::from(fd);
            let (family, what) = match kind {
                ListenerKind::Inet => (None, "a listening TCP socket"),
                _ => (Some(libc::AF_UNIX), "a listening unix stream socket"),
            };
            let listening = sock.is_listener().map_err(|_| wrong(what))?;
            let domain = sock.domain().map_err(|_| wrong(what))?;
            let family_ok = match family {
                Some(f) => domain == socket2::Domain::from(f),
                None => domain == socket2::Domain::IPV4 || domain == socket2::Domain::IPV6,
            };
            if !listening || !family_ok || sock.r#type()? != socket2::Type::STREAM {
                return Err(wrong(what));
            }
        }
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`, keeping its other status flags.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let mut flags = OFlag::from_bits_retain(flags);
    if !flags.contains(OFlag::O_NONBLOCK) {
        flags.insert(OFlag::O_NONBLOCK);
        fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_fd() -> OwnedFd {
        TcpListener::bind("127.0.0.1:0").expect("bind").into()
    }

    #[test]
    fn from_fd_checks_the_kind_and_sets_nonblocking() {
        let l = Listener::from_fd(tcp_fd(), ListenerKind::Inet).expect("tcp as inet");
        assert_eq!(l.kind(), ListenerKind::Inet);
        // The protocol's type itself (one ListenerKind), so it prints as the master's logs do.
        assert_eq!(l.kind().to_string(), "inet");
        let Listener::Tcp(t) = &l else {
            panic!("tcp listener expected")
        };
        assert_eq!(
            t.accept().expect_err("no client").kind(),
            io::ErrorKind::WouldBlock
        );
        for wrong in [ListenerKind::Unix, ListenerKind::Fifo] {
            let err = Listener::from_fd(tcp_fd(), wrong).expect_err("kind mismatch");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{wrong:?}: {err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u.sock");
        let unix: OwnedFd = UnixListener::bind(&path).expect("bind unix").into();
        assert!(Listener::from_fd(unix, ListenerKind::Unix).is_ok());
        let file: OwnedFd = std::fs::File::create(dir.path().join("f"))
            .expect("file")
            .into();
        assert!(Listener::from_fd(file, ListenerKind::Fifo).is_err());
        // A connected (not listening) socket is refused too.
        let server = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
        assert!(Listener::from_fd(client.into(), ListenerKind::Inet).is_err());
    }
}
