//! The master's unsafe corner: fork/exec of a server child with fd staging, and fd hygiene.
//!
//! Contract: [`spawn_child`] is the only place that runs code between `fork` and `exec`. That
//! code (the `pre_exec` closure) calls only async-signal-safe functions (`fcntl`, `dup2`,
//! `close_range`, `chroot`, `chdir`, `setrlimit`, `setgroups`, `setgid`, `setuid`, `prctl`,
//! `getppid`) on memory prepared before the fork: the master may have threads (the log
//! collector), so nothing may allocate or take a lock there. User and group names were resolved
//! at config load ([`crate::services::process::Process`]); the child applies numbers only.
//!
//! Order in the child: fds staged, chroot, chdir, rlimits (raising a hard limit needs root),
//! then the privilege drop (setgroups, setgid, setuid), and last `PR_SET_PDEATHSIG`: the kernel
//! clears the parent-death signal when the child's credentials change.
//!
//! Fd staging: the child must see fd 3 = generation pipe, fd 4 = private pipe, fds 5.. =
//! listeners. A source fd may itself be one of 3, 4, 5.. (for another slot), so every source is
//! first duplicated *above* every source and target (`F_DUPFD_CLOEXEC`), and only then moved
//! into place with `dup2` (which clears CLOEXEC on the target). The high copies keep CLOEXEC and
//! vanish at exec; no source is overwritten before it has been copied.
//!
//! The one fd the child holds that is not ours: std's exec-error pipe (CLOEXEC; the child writes
//! the exec errno into it, the parent reads EOF on success). std opens it in `spawn`, at the
//! lowest free number, and a reload that closed listeners frees low numbers: the pipe could be
//! one of our targets, get overwritten by `dup2`, and a failed exec would look like a start
//! (the child then dies writing the errno into a listener). So while spawning, every free fd
//! below the last target holds a `/dev/null` placeholder ([`occupy_below`]), and [`fd_table`]
//! keeps the master's other threads from freeing one meanwhile.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nix::sys::resource::{Resource, getrlimit};
use zmaster_core::protocol;

use crate::services::process::Process;

/// Held while a child is spawned; a master thread that closes an fd while the main thread may
/// spawn (the log collector rotating its file) holds it too, so no fd number below the staging
/// targets becomes free between [`occupy_below`] and the exec.
static FD_TABLE: Mutex<()> = Mutex::new(());

/// Takes the fd-table lock (see [`FD_TABLE`]); a panic elsewhere while holding it changes
/// nothing it guards, so poisoning is ignored.
pub(crate) fn fd_table() -> MutexGuard<'static, ()> {
    FD_TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fills every free fd number below `limit` with a CLOEXEC `/dev/null` placeholder, so the next
/// fd this process opens gets a number >= `limit`. Drop the result to free them again.
///
/// # Errors
/// `/dev/null` cannot be opened (EMFILE: a spawn would fail anyway).
pub(crate) fn occupy_below(limit: RawFd) -> io::Result<Vec<OwnedFd>> {
    let mut held = Vec::new();
    loop {
        // open(2) returns the lowest free number; std opens files CLOEXEC.
        let placeholder = OwnedFd::from(File::open("/dev/null")?);
        if placeholder.as_raw_fd() >= limit {
            return Ok(held);
        }
        held.push(placeholder);
    }
}

/// Variables addressed to the master alone: systemd's (SPEC §12) and the binary upgrade's
/// handover (SPEC §14). A child that saw them would try to adopt fds it does not own or notify
/// systemd in the master's name.
pub(crate) const SYSTEMD_ONLY_ENV: [&str; 7] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "ZMASTER_UPGRADE_FDS",
];

/// The variable naming a child's heartbeat fd (see `supervisor::heartbeat`).
pub(crate) const HEARTBEAT_ENV: &str = "ZM_HEARTBEAT_FD";

/// CLOCK_MONOTONIC in nanoseconds: the clock a zmaster child stamps its heartbeat with.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, valid and exclusively borrowed for
    // the call; CLOCK_MONOTONIC always exists on Linux (a failure leaves zeros: "no time").
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// What a child needs: its program, argv (argv[0] included), the source fds for 3, 4, 5...,
/// where to chroot/chdir, and its ids and rlimits.
pub(crate) struct ChildSpec<'a> {
    pub(crate) program: &'a Path,
    pub(crate) argv: &'a [OsString],
    pub(crate) fds: Vec<RawFd>,
    pub(crate) chroot: Option<&'a Path>,
    pub(crate) chdir: Option<&'a Path>,
    pub(crate) process: &'a Process,
    /// The target slot of the heartbeat memfd (just after the listeners), named to the child in
    /// `ZM_HEARTBEAT_FD`; `None`: the variable is removed from its environment.
    pub(crate) heartbeat_fd: Option<RawFd>,
    /// The target slot of the board memfd (the last of `fds`) and the child's place on it,
    /// named in `ZM_BOARD`; `None`: the variable is removed from its environment.
    pub(crate) board: Option<(RawFd, usize)>,
}

/// The rlimit the child sets for `soft`: the hard limit is raised to `soft` when lower (root
/// only; otherwise the spawn fails with EPERM) and kept when higher.
fn child_limit(resource: Resource, soft: Option<u64>) -> io::Result<Option<libc::rlimit>> {
    let Some(soft) = soft else {
        return Ok(None);
    };
    let (_, hard) = getrlimit(resource).map_err(io::Error::from)?;
    Ok(Some(libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard.max(soft),
    }))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Forks and execs a server child; returns its pid.
///
/// # Errors
/// The fork or the exec failed (std reports exec errors back through its CLOEXEC pipe).
pub(crate) fn spawn_child(spec: &ChildSpec<'_>) -> io::Result<u32> {
    let first_target: RawFd = 3;
    let count = spec.fds.len() as RawFd;
    let above = spec
        .fds
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(first_target + count)
        + 1;
    let sources = spec.fds.clone();
    let mut high = vec![-1 as RawFd; sources.len()];
    let chroot = spec.chroot.map(c_path).transpose()?;
    let chdir = match (&chroot, spec.chdir) {
        (_, Some(dir)) => Some(c_path(dir)?),
        (Some(_), None) => Some(c_path(&PathBuf::from("/"))?),
        (None, None) => None,
    };
    let master_pid = std::process::id() as libc::pid_t;
    // Both limits: a zmaster server raises its soft nofile limit to the hard one at start
    // (SPEC §13), so a soft limit alone would not stick (systemd's LimitNOFILE= sets both too).
    let nofile = spec.process.nofile.map(|n| libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    });
    let core = child_limit(Resource::RLIMIT_CORE, spec.process.core_size)?;
    let groups: Option<Vec<libc::gid_t>> = spec.process.groups.clone();
    let (gid, uid) = (spec.process.gid, spec.process.uid);
    let mut command = Command::new(spec.program);
    command
        .arg0(&spec.argv[0])
        .args(&spec.argv[1..])
        .stdin(Stdio::null());
    for var in SYSTEMD_ONLY_ENV {
        command.env_remove(var);
    }
    // Set only for the child that got the fd: an inherited value would name some other fd.
    match spec.heartbeat_fd {
        Some(fd) => command.env(HEARTBEAT_ENV, fd.to_string()),
        None => command.env_remove(HEARTBEAT_ENV),
    };
    match spec.board {
        Some((fd, slot)) => command.env(protocol::BOARD_ENV, format!("{fd}:{slot}")),
        None => command.env_remove(protocol::BOARD_ENV),
    };
    let stage = move || -> io::Result<()> {
        for (slot, &src) in high.iter_mut().zip(&sources) {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an fd the master holds open; async-signal-safe.
            *slot = check(unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, above) })?;
        }
        for (target, &copy) in (first_target..).zip(&high) {
            // SAFETY: dup2 of our own high copy onto a target slot; async-signal-safe.
            check(unsafe { libc::dup2(copy, target) })?;
        }
        // Everything else (strays the master inherited, its own fds) must not cross exec.
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags; ENOSYS is tolerated
        // because every fd the master opens is CLOEXEC already.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                (first_target + count) as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
        }
        if let Some(root) = &chroot {
            // SAFETY: chroot with a NUL-terminated path prepared before the fork.
            check(unsafe { libc::chroot(root.as_ptr()) })?;
        }
        if let Some(dir) = &chdir {
            // SAFETY: chdir with a NUL-terminated path prepared before the fork.
            check(unsafe { libc::chdir(dir.as_ptr()) })?;
        }
        if let Some(limit) = &nofile {
            // SAFETY: setrlimit with a struct prepared before the fork.
            check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) })?;
        }
        if let Some(limit) = &core {
            // SAFETY: setrlimit with a struct prepared before the fork.
            check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, limit) })?;
        }
        if let Some(groups) = &groups {
            // SAFETY: setgroups reads `len` gids from a Vec allocated before the fork.
            check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
        }
        if let Some(gid) = gid {
            // SAFETY: setgid takes no pointers; before setuid, while we may still change it.
            check(unsafe { libc::setgid(gid) })?;
        }
        if let Some(uid) = uid {
            // SAFETY: setuid takes no pointers; as root it sets real, effective and saved uid.
            check(unsafe { libc::setuid(uid) })?;
        }
        // SIGHUP, not SIGTERM: a zmaster server catches it and softstops (drains its
        // connections) as it does when fd 3 fails; a server that does not catch it just dies.
        // SAFETY: prctl/getppid are async-signal-safe and take no pointers.
        unsafe {
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGHUP as libc::c_ulong,
                0,
                0,
                0,
            ))?;
            if libc::getppid() != master_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH)); // the master died before exec
            }
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe calls on memory allocated before the
    // fork (see the module docs); it does not allocate, lock or touch other threads' state.
    unsafe {
        command.pre_exec(stage);
    }
    let _fd_table = fd_table();
    let _placeholders = occupy_below(first_target + count)?;
    command.spawn().map(|child| child.id())
}

/// Marks every fd >= 3 this process has now CLOEXEC: fds the master inherited from whoever
/// started it must never reach a child (SPEC §4).
pub(crate) fn mark_inherited_fds_cloexec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set the close-on-exec flag of an fd number; an
        // fd that closed since the listing (the read_dir fd itself) just returns EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: RawFd) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok()
    }

    #[test]
    fn placeholders_fill_every_free_number_below_the_limit_and_none_above() {
        // Other unit tests of this binary open and close fds on their threads while this one
        // runs (only spawns take the fd-table lock), so one attempt can see a number taken or
        // freed under it: a few attempts, one of which must see no such churn.
        let attempt = || -> Result<(), String> {
            let _fd_table = fd_table();
            let opened: Vec<OwnedFd> = (0..3)
                .map(|_| File::open("/dev/null").unwrap().into())
                .collect();
            let numbers: Vec<RawFd> = opened.iter().map(AsRawFd::as_raw_fd).collect();
            drop(opened); // three free numbers; the last is the limit
            let limit = numbers[2];
            let held = occupy_below(limit).map_err(|e| e.to_string())?;
            let held_numbers: Vec<RawFd> = held.iter().map(AsRawFd::as_raw_fd).collect();
            if !held_numbers.iter().all(|fd| *fd < limit) {
                return Err(format!(
                    "a placeholder at or above {limit}: {held_numbers:?}"
                ));
            }
            if !(is_open(numbers[0]) && is_open(numbers[1])) {
                return Err(format!("{numbers:?} not all filled: {held_numbers:?}"));
            }
            // The next fd opened (std's exec-error pipe) lands at or above the limit.
            let next = File::open("/dev/null").unwrap();
            if next.as_raw_fd() < limit {
                return Err(format!("next fd {} below {limit}", next.as_raw_fd()));
            }
            drop(held);
            Ok(())
        };
        let mut errors = Vec::new();
        for _ in 0..20 {
            match attempt() {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
        }
        panic!("every attempt failed: {errors:?}");
    }
}
