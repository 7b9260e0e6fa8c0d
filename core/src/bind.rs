//! Binding listeners, one way for the master and `alone` servers: inet, unix sockets, FIFOs.
//!
//! Every listener is non-blocking and close-on-exec (socket2 opens sockets `SOCK_CLOEXEC`, std
//! opens files `O_CLOEXEC`). Inet sockets get `SO_REUSEADDR`, IPv6 ones `IPV6_V6ONLY` too (so a
//! `0.0.0.0:PORT` entry beside `[::]:PORT` binds whatever `net.ipv6.bindv6only` says). A unix
//! socket file already at the path is replaced only when nothing answers there
//! ([`remove_stale_socket`]), never when it is not a socket; FIFOs are created mode 0666 whatever
//! the umask (SPEC §4). What a process created it removes at stop only while it is still that
//! file ([`remove_if_ours`], by device and inode).

use std::fs::{self, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::addr::Address;
use crate::error::{Error, Result};

/// The default listen backlog (`server-listen-backlog`), of the master and of `alone` servers.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// The mode FIFOs are created with, whatever the umask (SPEC §4).
pub const FIFO_MODE: u32 = 0o666;

/// Who a file is: its (device, inode), not following a symlink.
pub type FileId = (u64, u64);

/// A bound listener: its fd, and the unix socket file the bind created, if any.
#[derive(Debug)]
pub struct Bound {
    /// The listening socket (non-blocking, close-on-exec) or the FIFO opened read-write.
    pub fd: OwnedFd,
    /// The unix socket file this bind created and its identity, for [`remove_if_ours`].
    pub created: Option<(PathBuf, FileId)>,
}

impl Bound {
    /// Closes the listener and removes the unix socket file it created, while still ours.
    pub fn close(self) {
        if let Some((path, id)) = &self.created {
            remove_if_ours(path, *id);
        }
    }
}

/// Binds `addr` with `backlog`; a unix socket file gets `unix_mode` if given.
///
/// # Errors
/// The message says what was bound: `bind 127.0.0.1:25: Address already in use`,
/// `bind unix socket PATH: ...`, `open fifo PATH: ...`.
pub fn bind(addr: &Address, backlog: i32, unix_mode: Option<u32>) -> Result<Bound> {
    match addr {
        Address::Inet(sa) => {
            let fd = bind_inet(*sa, backlog).map_err(|e| Error::io(format!("bind {sa}"), e))?;
            Ok(Bound { fd, created: None })
        }
        Address::Unix(path) => {
            let what = || format!("bind unix socket {}", path.display());
            let fd = bind_unix(path, backlog, unix_mode).map_err(|e| Error::io(what(), e))?;
            let id = file_id(path).map_err(|e| Error::io(what(), e))?;
            Ok(Bound {
                fd,
                created: Some((path.clone(), id)),
            })
        }
        Address::Fifo(path) => {
            let fd = open_fifo(path)
                .map_err(|e| Error::io(format!("open fifo {}", path.display()), e))?;
            Ok(Bound { fd, created: None })
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
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(FIFO_MODE))
                .map_err(io::Error::from)?;
            // mkfifo is subject to the umask.
            fs::set_permissions(path, fs::Permissions::from_mode(FIFO_MODE))?;
        }
        Err(e) => return Err(e),
    }
    // Read-write so the FIFO never reports EOF when the last writer goes (std adds O_CLOEXEC).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(file.into())
}

/// The type of a unix socket, for the live check of [`remove_stale_socket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// A listener (`SOCK_STREAM`).
    Stream,
    /// A datagram socket (the master's log service).
    Datagram,
}

/// Makes `path` free for a bind of a `kind` socket: a socket file is removed only when it is
/// stale (a connect is refused: nobody is bound there any more); a missing path is fine.
///
/// # Errors
/// Something answers there (another master or server), the path is not a socket, or it
/// cannot be checked or removed.
pub fn remove_stale_socket(path: &Path, kind: SocketKind) -> io::Result<()> {
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

/// The identity of the file at `path` (not following a symlink): who owns a socket path.
///
/// # Errors
/// The path cannot be stat'ed.
pub fn file_id(path: &Path) -> io::Result<FileId> {
    fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Removes the socket file at `path` only while it is still the one with identity `id` (the one
/// this process bound), never a socket someone bound there since, never another kind of file.
pub fn remove_if_ours(path: &Path, id: FileId) {
    if fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == id)
    {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests;
