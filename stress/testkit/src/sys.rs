//! The only `unsafe` of the testkit: moving fds to 3, 4, 5, ... in a forked child before exec.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Most fds [`stage`] moves (a fixed array: the child may not allocate).
pub(crate) const MAX_STAGED: usize = 16;

/// Makes `command`'s child receive `sources` as fds 3, 4, 5, ... The caller keeps every
/// source open until `spawn` returns.
pub(crate) fn stage(command: &mut Command, sources: Vec<RawFd>) {
    assert!(
        sources.len() <= MAX_STAGED,
        "at most {MAX_STAGED} staged fds"
    );
    let mut fds = [-1 as RawFd; MAX_STAGED];
    fds[..sources.len()].copy_from_slice(&sources);
    let n = sources.len();
    // SAFETY: the closure runs in the forked child between fork and exec. It only calls
    // fcntl and dup2, which are async-signal-safe, on fds the parent holds open across the
    // fork; it reads a copied array and allocates nothing, so no lock or memory shared with
    // other threads of the parent is touched; every error returns through io::Error, which
    // `spawn` reports.
    unsafe {
        command.pre_exec(move || move_to_low(&fds[..n]));
    }
}

/// In the child: copies `sources` to fds 3, 4, 5, ... without overwriting a source.
fn move_to_low(sources: &[RawFd]) -> io::Result<()> {
    let mut high = [0 as RawFd; MAX_STAGED];
    for (slot, &fd) in high.iter_mut().zip(sources) {
        // SAFETY: F_DUPFD_CLOEXEC on an fd open across the fork; it is async-signal-safe and
        // gives a copy at 64 or above, clear of the targets, that closes at exec.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        if *slot == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, &fd) in (3..).zip(&high[..sources.len()]) {
        // SAFETY: dup2 between fds of this (child) process; async-signal-safe. The copy at
        // `target` has no FD_CLOEXEC, so it survives exec; the high copies close at exec.
        if unsafe { libc::dup2(fd, target) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
