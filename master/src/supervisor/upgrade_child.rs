//! The new master of a binary upgrade as the old master sees it (SPEC §14): started with every
//! listener, the pid file and the control socket as inherited fds (named in
//! `ZMASTER_UPGRADE_FDS`, see `activation`) plus a readiness pipe; then `ready PID` on the
//! pipe, or its exit, the pipe closing, or the deadline, each of which kills it (rollback).
//!
//! Design notes:
//! - The new master is started from the path the running one was started with, resolved to an
//!   absolute path at start ([`Launch::from_start`]): `/proc/self/exe` would name the running
//!   inode, so a binary replaced on disk would never take effect.
//! - It runs in a process group of its own: a terminal's ^C for the old master's job does not
//!   reach it, and a rollback kills the group (a wrapper script and what it started).
//! - It is not started with `PR_SET_PDEATHSIG` (unlike a server child): it must outlive the
//!   old master. `fork` clears the parent-death signal anyway; the new master clears it again.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::human_duration;
use crate::supervisor::activation::{Handover, Origin, UPGRADE_ENV};
use crate::supervisor::children::ExitReason;

/// The default `-master-upgrade-timeout`: how long a new master has to report ready.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rollback waits for the killed new master to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);
/// How long a new master that closed its readiness pipe has to exit by itself (its exit
/// status is the better reason) before it is killed.
const EXIT_WAIT: Duration = Duration::from_millis(500);
/// Variables that are not for the new master: systemd addressed `LISTEN_*` to the old pid
/// (its sockets travel in the handover), and `WATCHDOG_PID` names the old master (without
/// it the new one pings the watchdog itself).
const NOT_INHERITED_ENV: [&str; 4] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID"];

/// How to start a new master: the program path and argv this one was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launch {
    pub(crate) program: PathBuf,
    pub(crate) argv: Vec<OsString>,
    pub(crate) timeout: Duration,
}

impl Launch {
    /// From this process's argv, at start: argv[0] as an absolute path (resolved against the
    /// working dir, or looked up in `PATH`), else `/proc/self/exe` as it reads now.
    pub(crate) fn from_start(timeout: Duration) -> Launch {
        let argv: Vec<OsString> = std::env::args_os().collect();
        let cwd = std::env::current_dir().ok();
        let path = std::env::var_os("PATH");
        let program = argv
            .first()
            .and_then(|a0| program_path(a0, cwd.as_deref(), path.as_deref()))
            .or_else(|| std::fs::read_link("/proc/self/exe").ok())
            .unwrap_or_else(|| PathBuf::from("zmaster"));
        Launch {
            program,
            argv,
            timeout,
        }
    }
}

/// The absolute path of the program `argv0` names: with a `/` relative to `cwd`, without one
/// the first executable file of that name in `path` (as the shell found it). Not
/// canonicalized: a symlink swapped on disk must take effect at the next upgrade.
pub(crate) fn program_path(
    argv0: &OsStr,
    cwd: Option<&Path>,
    path: Option<&OsStr>,
) -> Option<PathBuf> {
    let name = Path::new(argv0);
    // std::path::absolute drops `.` components (`./zmaster`), never resolves a symlink.
    let absolute = |p: &Path| match p.is_absolute() {
        true => std::path::absolute(p).ok(),
        false => cwd.and_then(|c| std::path::absolute(c.join(p)).ok()),
    };
    if argv0.as_bytes().contains(&b'/') {
        return absolute(name);
    }
    if argv0.is_empty() {
        return None;
    }
    let executable = |p: &PathBuf| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    std::env::split_paths(path?)
        .filter_map(|dir| absolute(&dir.join(name)))
        .find(executable)
}

/// The fds an upgrade hands over (borrowed from the running master).
pub(crate) struct Fds<'a> {
    pub(crate) listeners: Vec<(BorrowedFd<'a>, Origin)>,
    pub(crate) pidlock: Option<BorrowedFd<'a>>,
    pub(crate) control: Option<BorrowedFd<'a>>,
}

/// Where an upgrade in progress stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    Waiting,
    /// The new master (this pid) runs its first generation.
    Ready(u32),
    /// Rolled back: why (the new master is gone).
    Failed(String),
}

/// An upgrade in progress, on the old master's side.
#[derive(Debug)]
pub(crate) struct NewMaster {
    pid: Pid,
    ready: File,
    buf: Vec<u8>,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    /// Its exit, when the supervisor's reaper saw it first.
    exited: Option<String>,
}

impl NewMaster {
    /// Starts the new master with `fds` inherited and a readiness pipe.
    ///
    /// # Errors
    /// The pipe or an fd copy cannot be made, or the program cannot be started.
    pub(crate) fn start(launch: &Launch, fds: &Fds<'_>, now: Instant) -> io::Result<NewMaster> {
        // Non-blocking on both ends (one open file per end): this master polls its end, and
        // the new master's one short line into an empty pipe never waits.
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // Inheritable copies for the new master only: dropped (closed) right after the spawn.
        let mut copies: Vec<OwnedFd> = Vec::new();
        let mut pass = |fd: BorrowedFd<'_>| -> io::Result<RawFd> {
            let copy = fd.try_clone_to_owned()?;
            fcntl(&copy, FcntlArg::F_SETFD(FdFlag::empty()))?;
            let n = copy.as_raw_fd();
            copies.push(copy);
            Ok(n)
        };
        let mut handover = Handover {
            ppid: std::process::id(),
            ready: pass(tx.as_fd())?,
            ..Handover::default()
        };
        handover.pidlock = fds.pidlock.map(&mut pass).transpose()?;
        handover.control = fds.control.map(&mut pass).transpose()?;
        for (fd, origin) in &fds.listeners {
            let n = pass(*fd)?;
            match origin {
                Origin::OldMaster => handover.bound.push(n),
                Origin::Systemd => handover.systemd.push(n),
            }
        }
        let mut command = Command::new(&launch.program);
        if let Some(arg0) = launch.argv.first() {
            command.arg0(arg0);
        }
        command
            .args(launch.argv.iter().skip(1))
            .env(UPGRADE_ENV, handover.format())
            .process_group(0);
        for var in NOT_INHERITED_ENV {
            command.env_remove(var);
        }
        let child = command.spawn()?;
        drop(copies);
        drop(tx);
        Ok(NewMaster {
            pid: Pid::from_raw(child.id() as i32),
            ready: File::from(rx),
            buf: Vec::new(),
            started: now,
            deadline: now + launch.timeout,
            timeout: launch.timeout,
            exited: None,
        })
    }

    /// The new master's pid (as started).
    pub(crate) fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// How long it has been going.
    pub(crate) fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// The readiness pipe: poll it for `POLLIN` (data or the new master's end closing).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// When the new master must be ready by.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The reaper saw `pid` end with `reason`: if it is the new master, the upgrade fails.
    pub(crate) fn child_exited(&mut self, pid: i32, reason: &ExitReason) -> bool {
        let ours = pid == self.pid.as_raw();
        if ours {
            self.exited = Some(reason.to_string());
        }
        ours
    }

    /// Reads the pipe and checks the deadline. A failure kills the new master (its process
    /// group) and reaps it before it is reported: nothing of it is left.
    pub(crate) fn poll(&mut self, now: Instant) -> Progress {
        let mut chunk = [0u8; 64];
        let eof = loop {
            match self.ready.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) if self.buf.len() + n <= 256 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => {
                    return self.fail(format!(
                        "the new master (pid {}) sent too much on its readiness pipe",
                        self.pid
                    ));
                }
                // A non-blocking read never sleeps, so it is never interrupted either.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => return self.fail(format!("readiness pipe: {e}")),
            }
        };
        if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            return match line
                .strip_prefix("ready ")
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                Some(pid) => Progress::Ready(pid),
                None => self.fail(format!(
                    "the new master (pid {}) sent {line:?} instead of \"ready PID\"",
                    self.pid
                )),
            };
        }
        if let Some(reason) = &self.exited {
            let why = format!(
                "the new master (pid {}) exited before it was ready: {reason}",
                self.pid
            );
            return self.fail(why);
        }
        if eof {
            // A new master closes the pipe mostly by exiting: its exit status says more.
            if let Some(reason) = reap(self.pid, Instant::now() + EXIT_WAIT) {
                let why = format!(
                    "the new master (pid {}) exited before it was ready: {reason}",
                    self.pid
                );
                self.exited = Some(reason);
                return self.fail(why);
            }
            let why = format!(
                "the new master (pid {}) closed its readiness pipe before it was ready",
                self.pid
            );
            return self.fail(why);
        }
        if now >= self.deadline {
            let why = format!(
                "the new master (pid {}) was not ready within {} (-master-upgrade-timeout)",
                self.pid,
                human_duration(self.timeout)
            );
            return self.fail(why);
        }
        Progress::Waiting
    }

    /// Rolls back: kills the new master's process group, reaps it, says why and how it ended.
    pub(crate) fn abort(&mut self, why: &str) -> String {
        self.fail(why.to_owned()).failure().unwrap_or_default()
    }

    fn fail(&mut self, why: String) -> Progress {
        match killpg(self.pid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => log::warn!("upgrade: kill the new master's group {}: {e}", self.pid),
        }
        let ended = match self.exited.take() {
            Some(reason) => Some(reason),
            None => reap(self.pid, Instant::now() + REAP_WAIT),
        };
        Progress::Failed(match ended {
            Some(reason) if !why.contains(&reason) => format!("{why} ({reason})"),
            _ => why,
        })
    }
}

impl Progress {
    fn failure(self) -> Option<String> {
        match self {
            Progress::Failed(why) => Some(why),
            Progress::Waiting | Progress::Ready(_) => None,
        }
    }
}

/// Waits (bounded) for `pid`, SIGKILLed, to be reaped; how it ended, or `None` when the
/// supervisor's reaper took it already (or it is stuck: the reaper will take it later).
fn reap(pid: Pid, until: Instant) -> Option<String> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(status) => return ExitReason::from_wait(status).map(|(_, r)| r.to_string()),
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
#[path = "upgrade_child_tests.rs"]
mod tests;
