//! The children table: starting a child, its service, generation, pipes and state, how it ended.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use zmaster_core::protocol;

use super::board::Boards;
use super::heartbeat::{self, Exit, Heartbeat};
use super::listener_set::ListenerSet;
use crate::error::{Error, ErrorKind, Result};
use crate::services::Service;
use crate::sys;

/// How long after fd 4 closes a child must still be unreaped to count as detached.
pub(crate) const DETACH_SETTLE: Duration = Duration::from_millis(50);

/// Why a child ended; prints as the master's log lines say it (`exit status 1`,
/// `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitReason {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal ended it (`core`: it left a core file).
    Killed { signal: Signal, core: bool },
}

impl ExitReason {
    /// The pid and reason of a child that ended; `None` for a status that is no end (stopped,
    /// continued, still alive).
    pub(crate) fn from_wait(status: WaitStatus) -> Option<(Pid, ExitReason)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, ExitReason::Exited(code))),
            WaitStatus::Signaled(pid, signal, core) => {
                Some((pid, ExitReason::Killed { signal, core }))
            }
            _ => None,
        }
    }

    /// `exit(0)`: the only clean end.
    pub(crate) fn is_clean(&self) -> bool {
        *self == ExitReason::Exited(0)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exit status {code}"),
            ExitReason::Killed { signal, core } => {
                let core = if *core { " (core dumped)" } else { "" };
                write!(f, "killed by {signal}{core}")
            }
        }
    }
}

/// Reaps one ended child without blocking; `None` when none is left to reap now.
pub(crate) fn reap_one() -> Option<(i32, ExitReason)> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return None,
            Ok(status) => {
                if let Some((pid, reason)) = ExitReason::from_wait(status) {
                    return Some((pid.as_raw(), reason));
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                log::error!("waitpid failed: {e}");
                return None;
            }
        }
    }
}

/// What a child is doing: `Serving` (current generation, attached: it counts towards
/// `server-proc-count`), `Draining` (an older generation: softstopped, finishing its
/// connections) or `Detached` (it closed fd 4 and lives on unsupervised, replaced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    Serving,
    Draining,
    Detached,
}

/// One child process.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) service: String,
    pub(crate) generation: u64,
    pub(crate) started: Instant,
    /// The write end of the child's private pipe, while the child is attached.
    pub(crate) private: Option<OwnedFd>,
    /// Set when fd 4 closed: decide at this time whether it was a detach.
    pub(crate) detach_check: Option<Instant>,
    pub(crate) detached: bool,
    /// Scaled down: SIGTERMed, it no longer counts and is not replaced.
    pub(crate) retiring: bool,
    /// The master's end of its heartbeat memfd (a service with SPEC §13 server limits).
    pub(crate) heartbeat: Option<Heartbeat>,
    /// Killed as hung: how old its heartbeat was.
    pub(crate) hung: Option<Duration>,
    /// Its slot on its generation's board (`board.rs`), held until it is reaped.
    pub(crate) board_slot: Option<usize>,
}

impl Child {
    /// A child of `service` in `generation`, just started, with the master's end of its pipe.
    pub(crate) fn new(service: &str, generation: u64, private: OwnedFd) -> Child {
        Child {
            service: service.to_owned(),
            generation,
            started: Instant::now(),
            private: Some(private),
            detach_check: None,
            detached: false,
            retiring: false,
            heartbeat: None,
            hung: None,
            board_slot: None,
        }
    }

    /// How it left, given its exit status: with the retire reason it wrote and whether the
    /// master killed it as hung.
    pub(crate) fn exit(&self, status: ExitReason) -> Exit {
        Exit {
            status,
            retired: self.retired(),
            hang: self.hung,
        }
    }

    /// The reason it retired itself, if it wrote one into its heartbeat memfd.
    pub(crate) fn retired(&self) -> Option<heartbeat::Retire> {
        self.heartbeat.as_ref().and_then(Heartbeat::retired)
    }

    /// Its state while `current` is the running generation.
    pub(crate) fn state(&self, current: u64) -> ChildState {
        if self.detached {
            ChildState::Detached
        } else if self.generation != current || self.retiring {
            ChildState::Draining
        } else {
            ChildState::Serving
        }
    }

    /// How long it has run at `now`.
    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// Every child the master started and has not reaped, by pid.
#[derive(Debug, Default)]
pub(crate) struct Children {
    by_pid: BTreeMap<i32, Child>,
    boards: Boards,
}

impl Children {
    pub(crate) fn insert(&mut self, pid: i32, child: Child) {
        self.by_pid.insert(pid, child);
    }

    /// Forgets a reaped child; its board slot is zeroed (or the board dropped with the
    /// generation's last child).
    pub(crate) fn remove(&mut self, pid: i32) -> Option<Child> {
        let child = self.by_pid.remove(&pid)?;
        let last = self
            .of_generation(&child.service, child.generation)
            .next()
            .is_none();
        if last {
            // Whether or not this child had a slot (past 64, or a board made after it).
            self.boards.release_all(&child.service, child.generation);
        } else if let Some(slot) = child.board_slot {
            self.boards.release(&child.service, child.generation, slot);
        }
        Some(child)
    }

    /// The children of `service` started in `generation` (any state).
    fn of_generation<'a>(
        &'a self,
        service: &'a str,
        generation: u64,
    ) -> impl Iterator<Item = &'a Child> + 'a {
        self.by_pid
            .values()
            .filter(move |c| c.service == service && c.generation == generation)
    }

    pub(crate) fn get(&self, pid: i32) -> Option<&Child> {
        self.by_pid.get(&pid)
    }

    pub(crate) fn get_mut(&mut self, pid: i32) -> Option<&mut Child> {
        self.by_pid.get_mut(&pid)
    }

    /// Every child, by increasing pid.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, &Child)> {
        self.by_pid.iter().map(|(pid, c)| (*pid, c))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut Child)> {
        self.by_pid.iter_mut().map(|(pid, c)| (*pid, c))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.by_pid.keys().copied().collect()
    }

    /// How many children of `service` serve in generation `current`.
    pub(crate) fn serving(&self, service: &str, current: u64) -> usize {
        self.by_pid
            .values()
            .filter(|c| c.service == service && c.state(current) == ChildState::Serving)
            .count()
    }

    /// The serving children of `service` in generation `current`, youngest first.
    pub(crate) fn serving_youngest_first(&self, service: &str, current: u64) -> Vec<i32> {
        let mut pids: Vec<(Instant, i32)> = self
            .iter()
            .filter(|(_, c)| c.service == service && c.state(current) == ChildState::Serving)
            .map(|(pid, c)| (c.started, pid))
            .collect();
        pids.sort_by(|a, b| b.cmp(a));
        pids.into_iter().map(|(_, pid)| pid).collect()
    }

    /// How many children of `service` detached (of any generation).
    pub(crate) fn detached(&self, service: &str) -> usize {
        self.by_pid
            .values()
            .filter(|c| c.detached && c.service == service)
            .count()
    }

    /// The children whose fd 4 the master still watches: attached, no detach check pending.
    pub(crate) fn watched(&self) -> Vec<i32> {
        self.iter()
            .filter(|(_, c)| c.private.is_some() && c.detach_check.is_none())
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The earliest pending detach check.
    pub(crate) fn next_detach_check(&self) -> Option<Instant> {
        self.by_pid.values().filter_map(|c| c.detach_check).min()
    }

    /// fd 4 of `pid` closed at `now`: check after [`DETACH_SETTLE`] whether it detached.
    pub(crate) fn pipe_closed(&mut self, pid: i32, now: Instant) {
        if let Some(child) = self.by_pid.get_mut(&pid) {
            child.detach_check = Some(now + DETACH_SETTLE);
        }
    }

    /// The children whose detach check is due at `now`.
    pub(crate) fn detach_checks_due(&self, now: Instant) -> Vec<i32> {
        self.iter()
            .filter(|(_, c)| c.detach_check.is_some_and(|t| t <= now))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Starts a child of `spec` in `generation` with its listeners from `listeners`: fd 3 the
    /// generation pipe, fd 4 a new private pipe, fd 5+ the listeners (LIB-ZC's layout), and
    /// after them its heartbeat memfd when the service sets a SPEC §13 server limit, then its
    /// generation's board memfd (`board.rs`) with `server-proc-balance` unless all 64 slots
    /// are taken.
    pub(crate) fn spawn(
        &mut self,
        spec: &Service,
        generation: &Generation,
        listeners: &ListenerSet,
        config_dir: &Path,
        child_args: &[OsString],
    ) -> Result<()> {
        let (private_read, private_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("create private pipe", e.into()))?;
        let mut fds = vec![generation.write.as_raw_fd(), private_read.as_raw_fd()];
        let mut kinds = Vec::with_capacity(spec.addrs.len());
        for sa in &spec.addrs {
            let listener = listeners.get(&sa.addr).ok_or_else(|| {
                Error::new(ErrorKind::Io, format!("listener {} is not bound", sa.addr))
            })?;
            fds.push(listener.fd().as_raw_fd());
            kinds.push((sa.name.as_str(), sa.addr.kind()));
        }
        let heartbeat = heartbeat::for_child(&spec.name, &spec.process.limits);
        let heartbeat_fd = heartbeat.as_ref().map(|h| {
            fds.push(h.fd().as_raw_fd());
            // Its slot: the one after the last listener.
            protocol::GENERATION_FD + fds.len() as i32 - 1
        });
        let board = if spec.process.balance {
            let taken: Vec<usize> = self
                .of_generation(&spec.name, generation.number)
                .filter_map(|c| c.board_slot)
                .collect();
            self.boards
                .slot_for(&spec.name, generation.number, &taken)
                .map(|(fd, slot)| {
                    fds.push(fd.as_raw_fd());
                    // After the listeners and the heartbeat memfd.
                    (protocol::GENERATION_FD + fds.len() as i32 - 1, slot)
                })
        } else {
            None
        };
        let inherited = protocol::assign_listener_fds(kinds);
        let cf_path = std::path::absolute(&spec.cf_path).unwrap_or_else(|_| spec.cf_path.clone());
        let mut argv = protocol::child_argv(&spec.command, config_dir, &cf_path, &inherited);
        argv.extend(child_args.iter().cloned());
        let child = sys::ChildSpec {
            program: &spec.command,
            argv: &argv,
            fds,
            chroot: spec.chroot.as_deref(),
            chdir: spec.chdir.as_deref(),
            process: &spec.process,
            heartbeat_fd,
            board,
        };
        let pid = match sys::spawn_child(&child) {
            Ok(pid) => pid,
            Err(e) => {
                if board.is_some()
                    && self
                        .of_generation(&spec.name, generation.number)
                        .next()
                        .is_none()
                {
                    // No child of the generation holds the board it made for this one.
                    self.boards.release_all(&spec.name, generation.number);
                }
                return Err(Error::io(format!("start {}", spec.command.display()), e));
            }
        };
        drop(private_read);
        let number = generation.number;
        log::debug!(
            "service={} pid={pid} generation={number} started",
            spec.name
        );
        let mut child = Child::new(&spec.name, number, private_write);
        child.heartbeat = heartbeat;
        child.board_slot = board.map(|(_, slot)| slot);
        self.insert(pid as i32, child);
        Ok(())
    }

    /// Sends `signal` to every child (errors ignored: a child may be gone already).
    pub(crate) fn signal_all(&self, signal: Signal) {
        for pid in self.by_pid.keys() {
            let _ = kill(Pid::from_raw(*pid), signal);
        }
    }
}

/// A generation: its pipe (read end kept, write end handed to children).
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) number: u64,
    /// Dropped to softstop the generation's children (they see POLLERR on fd 3).
    read: Option<OwnedFd>,
    pub(crate) write: OwnedFd,
}

impl Generation {
    pub(crate) fn new(number: u64) -> Result<Generation> {
        let (read, write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("create generation pipe", e.into()))?;
        Ok(Generation {
            number,
            read: Some(read),
            write,
        })
    }

    /// Tells every child of this generation to softstop (graceful stop).
    pub(crate) fn softstop(&mut self) {
        self.read = None;
    }
}

#[cfg(test)]
#[path = "children_tests.rs"]
mod tests;
