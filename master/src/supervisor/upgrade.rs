//! Binary upgrade (SPEC §14): the state machine the supervision loop drives, on both ends.
//!
//! Old master: [`State::begin`] (SIGUSR2, the control socket's `upgrade`) starts the new master
//! ([`child`]); the loop polls [`State::fd`] until [`State::deadline`], tells it of exits
//! ([`State::child_exited`]) and asks [`State::turn`] what happened: [`Decision::Ready`] (hand
//! over: close the listeners and the control socket without removing a file, drain, exit) or
//! [`Decision::RolledBack`] (the new master is killed; this one goes on as before). At most one
//! upgrade runs at a time, and a master that handed over starts none.
//!
//! New master: started with a readiness pipe, it reports ready once its first generation runs
//! ([`State::report_ready`]): its pid into the pid file, `ready PID` into the pipe, and the
//! inherited socket files become its own (removed at its stop).

#[path = "upgrade_child.rs"]
mod child;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

pub(crate) use child::{DEFAULT_TIMEOUT, Launch};
use child::{Fds, NewMaster, Progress};

use super::Supervisor;
use crate::control::{ControlServer, Reply, ReplyToken};
use crate::human_duration;
use crate::notify::Notifier;
use crate::pidfile::PidFile;
use crate::supervisor::children::ExitReason;
use crate::supervisor::listener_set::ListenerSet;

/// The new master's end of the readiness pipe.
#[derive(Debug)]
pub(crate) struct ReadyPipe(File);

impl ReadyPipe {
    pub(crate) fn new(fd: OwnedFd) -> ReadyPipe {
        ReadyPipe(File::from(fd))
    }

    /// Reports this master ready (`ready PID\n`) and closes the pipe.
    ///
    /// # Errors
    /// The old master is gone (EPIPE) or the write failed.
    fn ready(mut self) -> io::Result<()> {
        self.0
            .write_all(format!("ready {}\n", std::process::id()).as_bytes())
    }
}

/// An upgrade in progress: the new master, and the control client waiting for the result.
#[derive(Debug)]
struct Running {
    child: NewMaster,
    token: Option<ReplyToken>,
}

/// What an upgrade came to.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The new master (this pid) is ready: hand over, drain and exit.
    Ready { pid: u32, token: Option<ReplyToken> },
    /// The new master is gone; this one serves on as before.
    RolledBack {
        why: String,
        token: Option<ReplyToken>,
    },
}

/// The master's upgrade state: how to start a successor, the pid file (handed to it), the
/// upgrade in progress, and — in a master an upgrade started — the pipe to report ready on.
#[derive(Debug, Default)]
pub(crate) struct State {
    launch: Option<Launch>,
    pid_file: Option<PidFile>,
    running: Option<Running>,
    ready_pipe: Option<ReadyPipe>,
    /// This master handed over to that pid and drains.
    handed_over: Option<u32>,
}

impl State {
    pub(crate) fn new(
        launch: Launch,
        pid_file: Option<PidFile>,
        ready_pipe: Option<ReadyPipe>,
    ) -> State {
        State {
            launch: Some(launch),
            pid_file,
            ready_pipe,
            ..State::default()
        }
    }

    /// Starts an upgrade (`via` names the request in log lines: `SIGUSR2`, `control socket`).
    ///
    /// # Errors
    /// Refused (one is in progress, this master handed over already) or the new master could
    /// not be started: the reason, logged already.
    pub(crate) fn begin(
        &mut self,
        via: &str,
        listeners: &ListenerSet,
        control: Option<&ControlServer>,
        token: Option<ReplyToken>,
        now: Instant,
    ) -> Result<(), String> {
        let refuse = |why: String| {
            log::warn!("{via}: {why}; ignored");
            Err(why)
        };
        if let Some(pid) = self.handed_over {
            return refuse(format!(
                "this master handed over to pid {pid} and is draining"
            ));
        }
        if let Some(r) = &self.running {
            let pid = r.child.pid();
            return refuse(format!(
                "an upgrade is already in progress (new master pid {pid})"
            ));
        }
        let Some(launch) = &self.launch else {
            return refuse("no program to start a new master from".into());
        };
        let fds = Fds {
            listeners: listeners.handover_fds(),
            pidlock: self.pid_file.as_ref().map(PidFile::lock_fd),
            control: control.map(ControlServer::listener_fd),
        };
        let program = launch.program.display();
        match NewMaster::start(launch, &fds, now) {
            Ok(child) => {
                log::info!(
                    "{via}: upgrade: starting the new master {program} (pid {}); it has {} to be ready",
                    child.pid(),
                    human_duration(launch.timeout)
                );
                self.running = Some(Running { child, token });
                Ok(())
            }
            Err(e) => {
                let why = format!("cannot start {program}: {e}");
                log::error!("upgrade failed, this master keeps serving: {why}");
                Err(why)
            }
        }
    }

    /// The readiness pipe of the upgrade in progress, to poll for `POLLIN`.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref().map(|r| r.child.fd())
    }

    /// When the upgrade in progress must be decided by.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.running.as_ref().map(|r| r.child.deadline())
    }

    /// The reaper saw `pid` end: true if it was the new master (the next turn rolls back).
    pub(crate) fn child_exited(&mut self, pid: i32, reason: &ExitReason) -> bool {
        self.running
            .as_mut()
            .is_some_and(|r| r.child.child_exited(pid, reason))
    }

    /// Reads the readiness pipe, checks the deadline: what the upgrade came to, if decided.
    pub(crate) fn turn(&mut self, now: Instant) -> Option<Decision> {
        let running = self.running.as_mut()?;
        match running.child.poll(now) {
            Progress::Waiting => None,
            Progress::Ready(pid) => {
                let running = self.running.take()?;
                log::info!(
                    "upgrade: the new master (pid {pid}) is ready after {}; handing over",
                    human_duration(running.child.elapsed(now))
                );
                self.handed_over = Some(pid);
                Some(Decision::Ready {
                    pid,
                    token: running.token,
                })
            }
            Progress::Failed(why) => Some(self.rolled_back(why)),
        }
    }

    /// Rolls the upgrade in progress back, if there is one (a stop comes first).
    pub(crate) fn abort(&mut self, why: &str) -> Option<Decision> {
        let why = self.running.as_mut()?.child.abort(why);
        Some(self.rolled_back(why))
    }

    fn rolled_back(&mut self, why: String) -> Decision {
        let token = self.running.take().and_then(|r| r.token);
        log::error!("upgrade failed, this master keeps serving: {why}");
        // The new master writes its pid just before it reports ready: take the file back.
        if let Some(pid_file) = &mut self.pid_file {
            let ours = std::process::id().to_string();
            let text = std::fs::read_to_string(pid_file.path()).unwrap_or_default();
            if text.trim() != ours
                && let Err(e) = pid_file.write_pid()
            {
                log::error!("{e}");
            }
        }
        Decision::RolledBack { why, token }
    }

    /// True when this master handed over to a new one (it drains and exits).
    #[cfg(test)]
    pub(crate) fn handed_over(&self) -> bool {
        self.handed_over.is_some()
    }

    /// In a master an upgrade started, once its first generation runs: writes the pid file,
    /// reports ready to the old master, and makes the inherited socket files its own; systemd
    /// hears `MAINPID=` (it counts with `NotifyAccess=all`; the old master sends it too).
    /// Nothing to do otherwise.
    pub(crate) fn report_ready(
        &mut self,
        listeners: &mut ListenerSet,
        control: Option<&mut ControlServer>,
        notifier: &Notifier,
    ) {
        let Some(pipe) = self.ready_pipe.take() else {
            return;
        };
        if let Some(Err(e)) = self.pid_file.as_mut().map(PidFile::write_pid) {
            log::error!("{e}");
        }
        let old = std::os::unix::process::parent_id();
        match pipe.ready() {
            Ok(()) => log::info!("upgrade: ready; the old master (pid {old}) hands over"),
            Err(e) => log::warn!("upgrade: cannot tell the old master (pid {old}) ready: {e}"),
        }
        listeners.claim_inherited();
        if let Some(control) = control {
            control.claim();
        }
        notifier.main_pid(std::process::id());
    }
}

/// The supervisor's side: what SIGUSR2, the control socket, the poll loop, the reaper, the
/// first READY and a stop do with the upgrade state.
impl Supervisor {
    /// Sets how this master starts a successor, its pid file, and (started by an upgrade) the
    /// pipe to report ready on.
    pub(crate) fn prepare_upgrades(&mut self, state: State) {
        self.upgrade = state;
    }

    /// SIGUSR2 or the control socket's `upgrade` (`token`: the reply waits for the result).
    ///
    /// # Errors
    /// Refused or not started: the reason (logged already).
    pub(super) fn begin_upgrade(
        &mut self,
        via: &str,
        token: Option<ReplyToken>,
    ) -> std::result::Result<(), String> {
        if self.stopping || self.stop_request.is_some() {
            let why = "the master is stopping".to_owned();
            log::warn!("{via}: {why}; no upgrade");
            return Err(why);
        }
        let now = Instant::now();
        self.upgrade
            .begin(via, &self.listeners, self.control.as_ref(), token, now)
    }

    /// After each poll: the upgrade in progress, if it is decided now.
    pub(super) fn upgrade_turn(&mut self) {
        if let Some(decision) = self.upgrade.turn(Instant::now()) {
            self.apply_upgrade(decision);
        }
    }

    /// A stop during an upgrade rolls it back first.
    pub(super) fn abort_upgrade(&mut self, why: &str) {
        if let Some(decision) = self.upgrade.abort(why) {
            self.apply_upgrade(decision);
        }
    }

    /// The first READY of a master an upgrade started: report it to the old master.
    pub(super) fn report_upgrade_ready(&mut self) {
        self.upgrade
            .report_ready(&mut self.listeners, self.control.as_mut(), &self.notifier);
    }

    fn apply_upgrade(&mut self, decision: Decision) {
        let (token, reply) = match decision {
            Decision::RolledBack { why, token } => (token, Reply::error(why)),
            Decision::Ready { pid, token } => {
                // systemd's main process is the new master from here; this one falls silent
                // (its STOPPING=1 would read as the service stopping).
                self.notifier.main_pid(pid);
                self.notifier = Notifier::default();
                self.reply_upgrade(token, Reply::upgraded(pid));
                // The new master serves the sockets (and owns their files) from now on.
                if let Some(control) = self.control.take() {
                    control.hand_over();
                }
                std::mem::take(&mut self.listeners).hand_over();
                log::info!(
                    "upgrade: listeners handed over to pid {pid}; draining {} children",
                    self.children.len()
                );
                self.request_stop(true);
                return;
            }
        };
        self.reply_upgrade(token, reply);
    }

    pub(super) fn reply_upgrade(&mut self, token: Option<ReplyToken>, reply: Reply) {
        if let (Some(token), Some(control)) = (token, self.control.as_mut()) {
            control.complete(token, reply);
        }
    }
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
