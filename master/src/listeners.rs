//! Binding listeners: inet (SO_REUSEADDR), unix stream sockets, FIFOs; non-blocking, CLOEXEC.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
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
            // Only remove the file if it is still the socket we bound, never a newer one.
            if fs::symlink_metadata(path)
                .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == *id)
            {
                let _ = fs::remove_file(path);
            }
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
            let meta = fs::symlink_metadata(path).map_err(|e| Error::io(what(), e))?;
            Ok(Listener {
                addr: addr.clone(),
                fd,
                created: Some((path.clone(), (meta.dev(), meta.ino()))),
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

fn bind_unix(path: &Path, backlog: i32, unix_mode: Option<u32>) -> io::Result<OwnedFd> {
    match fs::symlink_metadata(path) {
        // A socket file is replaced only when it is stale: nobody accepts on it any more.
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a live socket is listening there (another master running?)",
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => fs::remove_file(path)?,
            Err(e) => return Err(e),
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
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
