//! Binding listeners: inet (SO_REUSEADDR), unix stream sockets, FIFOs; non-blocking, CLOEXEC.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use socket2::{Domain, SockAddr, Socket, Type};
use zmaster_core::addr::Address;

use crate::error::{Error, Result};

/// A socket or FIFO the master bound; closed (and its unix socket file removed) on drop
/// only through [`Listener::close`].
#[derive(Debug)]
pub(crate) struct Listener {
    addr: Address,
    fd: OwnedFd,
    /// A unix socket file this master created and its (dev, inode): removed at stop or when the
    /// address goes, but only while it is still that file.
    created: Option<(PathBuf, (u64, u64))>,
}

impl Listener {
    /// The address it listens on.
    pub(crate) fn addr(&self) -> &Address {
        &self.addr
    }

    /// The listening fd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Closes the listener and removes the unix socket file it created.
    pub(crate) fn close(self) {
        if let Some((path, id)) = &self.created {
            remove_if_ours(path, *id);
        }
    }
}

/// Binds `addr` with `backlog`; unix sockets get `unix_mode` if given.
///
/// # Errors
/// The bind fails: the message says what was bound (`bind 127.0.0.1:25: Address in use`).
pub(crate) fn bind(addr: &Address, backlog: i32, unix_mode: Option<u32>) -> Result<Listener> {
    match addr {
        Address::Inet(sa) => bind_inet(*sa, backlog)
            .map_err(|e| Error::io(format!("bind {sa}"), e))
            .map(|fd| Listener {
                addr: addr.clone(),
                fd,
                created: None,
            }),
        Address::Unix(path) => {
            let what = || format!("bind unix socket {}", path.display());
            let fd = bind_unix(path, backlog, unix_mode).map_err(|e| Error::io(what(), e))?;
            let id = file_id(path).map_err(|e| Error::io(what(), e))?;
            Ok(Listener {
                addr: addr.clone(),
                fd,
                created: Some((path.clone(), id)),
            })
        }
        Address::Fifo(path) => {
            let fd = open_fifo(path)
                .map_err(|e| Error::io(format!("open fifo {}", path.display()), e))?;
            Ok(Listener {
                addr: addr.clone(),
                fd,
                created: None,
            })
        }
    }
}

fn bind_inet(sa: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(sa), Type::STREAM.cloexec(), None)?;
    socket.set_reuse_address(true)?;
    if sa.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&SockAddr::from(sa))?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The type of a unix socket, for the live check of [`remove_stale_socket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// A listener (`SOCK_STREAM`).
    Stream,
    /// A datagram socket (the log service).
    Datagram,
}

/// Makes `path` free for a bind of a `kind` socket: a socket file is removed only when it is
/// stale (a connect is refused: nobody is bound there any more); a missing path is fine.
///
/// # Errors
/// Something answers there (another master?), the path is not a socket, or it cannot be
/// checked or removed.
pub(crate) fn remove_stale_socket(path: &Path, kind: SocketKind) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let answer = match kind {
        // Non-blocking: a blocking connect to a live listener whose backlog is full (a busy
        // master) would wait for an accept that may never come.
        SocketKind::Stream => {
            let probe = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
            probe.set_nonblocking(true)?;
            probe.connect(&SockAddr::unix(path)?)
        }
        SocketKind::Datagram => UnixDatagram::unbound()?.connect(path),
    };
    match answer {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => fs::remove_file(path),
        // EPROTOTYPE: a live socket of the other type is bound there: it is someone's too.
        // EAGAIN: a live listener with a full backlog.
        Ok(()) => Err(live()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPROTOTYPE | libc::EAGAIN)) => Err(live()),
        Err(e) => Err(e),
    }
}

fn live() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "a live socket is listening there (another master running?)",
    )
}

/// The (device, inode) of the file at `path` (not following a symlink): who owns a socket path.
///
/// # Errors
/// The path cannot be stat'ed.
pub(crate) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Removes the socket file at `path` only while it is still the one with identity `id` (the one
/// this process bound), never a socket someone bound there since.
pub(crate) fn remove_if_ours(path: &Path, id: (u64, u64)) {
    if fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == id)
    {
        let _ = fs::remove_file(path);
    }
}

fn bind_unix(path: &Path, backlog: i32, unix_mode: Option<u32>) -> io::Result<OwnedFd> {
    remove_stale_socket(path, SocketKind::Stream)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    if let Some(mode) = unix_mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn open_fifo(path: &Path) -> io::Result<OwnedFd> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a FIFO",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o666)).map_err(io::Error::from)?;
            // mkfifo is subject to the umask; FIFOs are created 0666 (SPEC §4).
            fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
        }
        Err(e) => return Err(e),
    }
    // Read-write so the FIFO never reports EOF when the last writer goes.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn inet_unix_and_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let tcp = bind(&Address::Inet("127.0.0.1:0".parse().unwrap()), 16, None).unwrap();
        assert!(matches!(tcp.addr(), Address::Inet(_)));
        let sock = dir.path().join("s.sock");
        let unix = bind(&Address::Unix(sock.clone()), 16, Some(0o600)).unwrap();
        assert_eq!(
            fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        UnixStream::connect(&sock).unwrap();
        // A live socket is never taken over...
        let err = bind(&Address::Unix(sock.clone()), 16, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("live socket"), "{err}");
        // ...a stale one is replaced.
        drop(unix);
        let again = bind(&Address::Unix(sock.clone()), 16, None).unwrap();
        again.close();
        assert!(!sock.exists());
        let fifo = dir.path().join("f.fifo");
        let f = bind(&Address::Fifo(fifo.clone()), 16, None).unwrap();
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(
            fs::metadata(&fifo).unwrap().permissions().mode() & 0o777,
            0o666
        );
        f.close();
    }

    #[test]
    fn datagram_sockets_are_replaced_only_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        remove_stale_socket(&path, SocketKind::Datagram).unwrap(); // nothing there: fine
        let live = UnixDatagram::bind(&path).unwrap();
        let id = file_id(&path).unwrap();
        let err = remove_stale_socket(&path, SocketKind::Datagram).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(file_id(&path).unwrap(), id);
        // A live socket of the other type is someone's too.
        let err = remove_stale_socket(&path, SocketKind::Stream).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(live);
        remove_stale_socket(&path, SocketKind::Datagram).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_live_listener_with_a_full_backlog_is_live_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        let busy = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        busy.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        busy.listen(0).unwrap();
        let mut queued = Vec::new();
        for _ in 0..64 {
            let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            c.set_nonblocking(true).unwrap();
            match c.connect(&SockAddr::unix(&path).unwrap()) {
                Ok(()) => queued.push(c),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let probe = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(remove_stale_socket(&probe, SocketKind::Stream));
        });
        let answer = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the live check hung on a full backlog");
        assert_eq!(answer.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
    }

    #[test]
    fn a_path_that_cannot_be_checked_is_an_error_not_free() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        // ENOTDIR: the parent is a regular file; a bind there would fail, say so now.
        let err = remove_stale_socket(&file.join("s.sock"), SocketKind::Stream).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    }

    #[test]
    fn only_the_socket_we_bound_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let ours = UnixDatagram::bind(&path).unwrap();
        let our_id = file_id(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let _theirs = UnixDatagram::bind(&path).unwrap();
        remove_if_ours(&path, our_id);
        assert!(path.exists(), "a socket bound by someone else was removed");
        remove_if_ours(&path, file_id(&path).unwrap());
        assert!(!path.exists());
        drop(ours);
        // A regular file with the id of what was once our socket is never removed.
        fs::write(&path, "data").unwrap();
        remove_if_ours(&path, file_id(&path).unwrap());
        assert!(path.exists());
    }

    #[test]
    fn fifos_are_reused_never_made_of_other_files_and_nonblocking_cloexec() {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.fifo");
        let first = bind(&Address::Fifo(path.clone()), 16, None).unwrap();
        let inode = file_id(&path).unwrap();
        // A FIFO already there (a restart) is opened as it is.
        let again = bind(&Address::Fifo(path.clone()), 16, None).unwrap();
        assert_eq!(file_id(&path).unwrap(), inode);
        for l in [&first, &again] {
            let fl = OFlag::from_bits_truncate(fcntl(l.fd(), FcntlArg::F_GETFL).unwrap());
            assert!(
                fl.contains(OFlag::O_NONBLOCK) && fl.contains(OFlag::O_RDWR),
                "{fl:?}"
            );
            let fd = FdFlag::from_bits_truncate(fcntl(l.fd(), FcntlArg::F_GETFD).unwrap());
            assert!(fd.contains(FdFlag::FD_CLOEXEC));
        }
        let file = dir.path().join("data");
        fs::write(&file, "keep me").unwrap();
        let err = bind(&Address::Fifo(file.clone()), 16, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a FIFO"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        fs::write(&path, "keep me").unwrap();
        let err = bind(&Address::Unix(path.clone()), 16, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn address_in_use_says_what() {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(&Address::Inet(addr), 16, None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("bind {addr}: ")), "{err}");
    }
}
