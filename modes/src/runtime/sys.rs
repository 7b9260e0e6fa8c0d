//! The runtime's only unsafe code: adopting the fds a master hands down (SPEC §5).
//!
//! Contract: an fd number becomes an [`OwnedFd`] here at most once per process, and only after
//! `fcntl(F_GETFD)` shows it is open. The protocol gives fds 3, 4 and 5+ to the server alone;
//! nothing else in the process claims them: the runtime adopts them right after parsing argv,
//! before it sets up logging or starts a thread, so no fd of its own can have taken one of
//! those numbers (a master that did not pass an fd makes the adoption fail, not alias).

use std::collections::HashSet;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// fd numbers already adopted in this process (never adopted twice, even after a close).
static ADOPTED: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Takes ownership of an inherited, open fd and marks it close-on-exec.
///
/// # Errors
/// `EBADF` when `fd` is not open; `EBUSY` when this process adopted it before.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    let mut adopted = ADOPTED.lock().unwrap_or_else(|poison| poison.into_inner());
    let adopted = adopted.get_or_insert_with(HashSet::new);
    if adopted.contains(&fd) {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: F_GETFD only reads the fd table entry of `fd`; any integer is a valid argument
    // (a closed or negative fd makes it fail with EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    adopted.insert(fd);
    // SAFETY: `fd` is open (checked above), it was handed to this process by its master for
    // this purpose (module contract) and it has not been adopted before (checked under the
    // lock), so the new OwnedFd is its only owner and closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on an fd we now own only changes its close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn adopts_open_fds_once_and_refuses_closed_ones() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let raw: RawFd = r.into_raw_fd();
        let owned = adopt_inherited_fd(raw).unwrap();
        assert_eq!(owned.as_raw_fd(), raw);
        assert_eq!(
            adopt_inherited_fd(raw).unwrap_err().raw_os_error(),
            Some(libc::EBUSY)
        );
        drop(owned);
        drop(w);
        assert!(adopt_inherited_fd(-1).is_err());
    }
}
