//! The master's listeners: an address and what `zmaster_core::bind` bound for it.

use std::os::fd::{AsFd, BorrowedFd};

use zmaster_core::addr::Address;
use zmaster_core::bind::{self, Bound};

use crate::error::Result;

/// A socket or FIFO the master bound; closed (and its unix socket file removed, while it is
/// still the one bound) only through [`Listener::close`].
#[derive(Debug)]
pub(crate) struct Listener {
    addr: Address,
    bound: Bound,
}

impl Listener {
    /// The address it listens on.
    pub(crate) fn addr(&self) -> &Address {
        &self.addr
    }

    /// The listening fd.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.bound.fd.as_fd()
    }

    /// Closes the listener and removes the unix socket file it created.
    pub(crate) fn close(self) {
        self.bound.close();
    }
}

/// Binds `addr` with `backlog`; unix sockets get `unix_mode` if given (see `zmaster_core::bind`
/// for the socket options and the stale-socket rule).
///
/// # Errors
/// The bind fails: the message says what was bound (`bind 127.0.0.1:25: Address in use`).
pub(crate) fn bind(addr: &Address, backlog: i32, unix_mode: Option<u32>) -> Result<Listener> {
    let bound = bind::bind(addr, backlog, unix_mode)?;
    Ok(Listener {
        addr: addr.clone(),
        bound,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    #[test]
    fn keeps_the_address_and_removes_its_socket_file_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let l = bind(&Address::Unix(sock.clone()), 16, None).unwrap();
        assert_eq!(l.addr(), &Address::Unix(sock.clone()));
        let fd = l.fd().try_clone_to_owned().unwrap();
        let accepting = std::os::unix::net::UnixListener::from(fd);
        std::os::unix::net::UnixStream::connect(&sock).unwrap();
        assert!(accepting.accept().is_ok(), "the fd is the listener bound");
        l.close();
        assert!(!sock.exists());
        let fifo = dir.path().join("f.fifo");
        bind(&Address::Fifo(fifo.clone()), 16, None)
            .unwrap()
            .close();
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
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
