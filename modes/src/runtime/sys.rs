//! The runtime's only unsafe code: adopting the fds a master hands down (SPEC §5), page size,
//! the monotonic clock, and removing an environment variable while single-threaded.
//!
//! Contract: an fd number becomes an [`OwnedFd`] here at most once per process, and only after
//! `fcntl(F_GETFD)` shows it is open with close-on-exec clear: a master's fds reach the child
//! through `exec`, so they cannot have `FD_CLOEXEC` set, while every fd a Rust program (or an
//! embedding one) opens for itself has it, and must not be closed behind its owner's back.
//! The protocol gives fds 3, 4 and 5+ to the server alone;
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
/// `EBADF` when `fd` is not open; `EBUSY` when this process adopted it before;
/// `InvalidInput` when it has close-on-exec set (so was not inherited through `exec`).
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
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "fd {fd} has close-on-exec set: it belongs to this process, not inherited from a master"
            ),
        ));
    }
    adopted.insert(fd);
    // SAFETY: `fd` is open and was inherited through exec (checked above: close-on-exec
    // clear), it was handed to this process by its master for this purpose (module contract) and it has not been adopted before (checked under the
    // lock), so the new OwnedFd is its only owner and closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on an fd we now own only changes its close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// The memory page size in bytes (4096 if the OS does not say).
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system value; _SC_PAGESIZE is a valid name, and a failure
    // is reported by a return value of -1, handled below.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the master compares heartbeats with).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, valid and exclusively borrowed for
    // the call; CLOCK_MONOTONIC always exists on Linux (a failure leaves zeros).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Removes `name` from the environment if this process has one thread; otherwise leaves it
/// (changing the environment while another thread may read it is undefined behaviour). True
/// when it was removed.
pub(crate) fn remove_env_if_single_threaded(name: &str) -> bool {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
    if threads.ok() != Some(1) {
        return false;
    }
    // SAFETY: this process has exactly one thread (checked just above; only a thread of this
    // process could start another, and this one is here), so no other thread can read or
    // write the environment during the call.
    unsafe { std::env::remove_var(name) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn cloexec(fd: RawFd) -> bool {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        flags & libc::O_CLOEXEC as u32 != 0
    }

    #[test]
    fn adopts_open_fds_once_and_refuses_closed_ones() {
        // As a master hands it down: close-on-exec clear.
        let (r, w) = nix::unistd::pipe().unwrap();
        let raw: RawFd = r.into_raw_fd();
        assert!(!cloexec(raw));
        let owned = adopt_inherited_fd(raw).unwrap();
        assert_eq!(owned.as_raw_fd(), raw);
        assert!(
            cloexec(raw),
            "adopted fds are not passed on to exec'd programs"
        );
        assert_eq!(
            adopt_inherited_fd(raw).unwrap_err().raw_os_error(),
            Some(libc::EBUSY)
        );
        drop(owned);
        drop(w);
        assert!(adopt_inherited_fd(-1).is_err());
    }

    #[test]
    fn refuses_the_process_own_close_on_exec_fds() {
        // A number this process never adopted (adoptions are remembered after a close).
        let mut opened = Vec::new();
        let own = loop {
            let f = std::fs::File::open("/dev/null").unwrap();
            let adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
            if !adopted.as_ref().is_some_and(|a| a.contains(&f.as_raw_fd())) {
                break f;
            }
            drop(adopted);
            opened.push(f);
        };
        let raw = own.as_raw_fd();
        let err = adopt_inherited_fd(raw).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("close-on-exec"), "{err}");
        // Neither taken nor closed: the owner's fd still works and is not marked adopted.
        assert!(cloexec(raw));
        assert!(own.metadata().is_ok());
        let adopted = ADOPTED.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!adopted.as_ref().is_some_and(|a| a.contains(&raw)));
    }
}
