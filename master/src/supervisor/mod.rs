//! The supervisor loop: spawn children per service, reap and restart them, reload, stop.
//!
//! Its parts, bottom up; each uses only those above it in this list:
//! - `listener_set`: the bound listeners by address, bound all or nothing on start and reload.
//! - `children`: starting a child (fd layout, argv), the child table (service, generation,
//!   pipes, serving/draining/detached), reaping into a typed exit reason, the generation pipe.
//! - `policy`: when a service may start its next child (crash-loop backoff, rounds, reset,
//!   reload, detach throttle); pure logic on `Instant`s, it only borrows `ExitReason`.
//! - `activation`: the sockets systemd passed (`LISTEN_FDS`) or an upgrading master handed
//!   over (`ZMASTER_UPGRADE_FDS`), adopted by `listener_set`.
//! - `upgrade`: the binary upgrade (SIGUSR2) on both ends: start the new master, wait for it
//!   to be ready, hand over or roll back; report ready when an upgrade started this one.
//! - this file: the loop that ties them to signals and `poll`, reload and scale; `stop`: the
//!   fast and the graceful stop; `status`: the snapshot a status report needs; `heartbeat`:
//!   the memfd a zmaster child beats into and leaves its retire reason in (SPEC §13). systemd
//!   hears of each step through `crate::notify`.
//!
//! Design notes (the reload handshake):
//! - One generation pipe per generation. Children get its write end as fd 3; the master keeps
//!   the read end (CLOEXEC, so no child holds it). Closing the read end makes every child of that
//!   generation see POLLERR on fd 3: softstop. A dying master closes it too.
//! - Each child gets the read end of a private pipe as fd 4; the master polls the write end.
//!   POLLERR there means the child closed fd 4: it exited or detached. Exits close fd 4 a moment
//!   before the child becomes reapable, so the master waits [`children::DETACH_SETTLE`] and
//!   calls it a detach only if the child was not reaped meanwhile — a crashing child is never
//!   mistaken for a detached one (which would bypass the crash-loop backoff).

mod activation;
mod board;
mod children;
#[cfg(test)]
mod control_tests;
mod heartbeat;
mod listener_set;
mod operator;
mod policy;
mod status;
mod stop;
mod upgrade;

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::control::ControlServer;
use crate::error::Result;
use crate::human_duration;
use crate::notify::Notifier;
use crate::services::Service;
use crate::signals::Signals;
pub(crate) use activation::take_inherited;
use children::{ChildState, Children, Generation};
use listener_set::ListenerSet;
pub use policy::Backoff;
use policy::{Phase, RestartPolicy};
#[allow(unused_imports)] // the control socket's conversion uses them
pub(crate) use status::{ChildStatus, LastExitStatus, MasterStatus, ServiceStatus, Status};
pub(crate) use upgrade::{
    DEFAULT_TIMEOUT as DEFAULT_UPGRADE_TIMEOUT, Launch, ReadyPipe, State as UpgradeState,
};

/// A service as configured, with its restart policy and the process count in force.
#[derive(Debug)]
struct ServiceState {
    spec: Service,
    policy: RestartPolicy,
    /// `server-proc-count`, or what a scale set until the next reload.
    proc_count: usize,
}

impl ServiceState {
    fn new(spec: Service, policy: RestartPolicy) -> ServiceState {
        ServiceState {
            proc_count: spec.proc_count,
            spec,
            policy,
        }
    }
}

/// Master settings that are not per service.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The config dir (absolute): `-server-config-path` for children.
    pub(crate) config_dir: PathBuf,
    /// How long stop waits for children after SIGTERM before SIGKILL.
    pub(crate) stop_grace: Duration,
    /// Wake at least this often (set when an `event_loop` hook wants calls while idle).
    pub(crate) tick_interval: Option<Duration>,
    /// The command line's `-key value` overrides, appended to every child's argv after
    /// `-server-service` (SPEC §4) so a server sees them with command-line precedence.
    pub(crate) child_args: Vec<OsString>,
}

/// The running master.
pub(crate) struct Supervisor {
    settings: Settings,
    services: Vec<ServiceState>,
    listeners: ListenerSet,
    generation: Generation,
    children: Children,
    signals: Signals,
    stopping: bool,
    started_at: Instant,
    /// A stop asked for (by a signal or the control socket): `true` = graceful.
    stop_request: Option<bool>,
    notifier: Notifier,
    ready_sent: bool,
    /// SIGUSR1: reopen log files (set by whoever owns them).
    reopen: Option<Box<dyn FnMut()>>,
    /// The control socket (SPEC §11), when one is served.
    control: Option<ControlServer>,
    /// The binary upgrade (SPEC §14): how to start a successor, the one in progress.
    upgrade: UpgradeState,
}

/// What the poll loop was told to do.
pub(crate) enum Outcome {
    /// A fast or graceful stop finished.
    Stopped,
}

impl Supervisor {
    /// Binds every listener of `services` (all or nothing; adopting the `passed` ones) and
    /// prepares the first generation.
    pub(crate) fn new(
        settings: Settings,
        services: Vec<Service>,
        signals: Signals,
        passed: Vec<activation::Passed>,
    ) -> Result<Supervisor> {
        let listeners = ListenerSet::adopt_and_bind(&services, passed)?;
        let now = Instant::now();
        Ok(Supervisor {
            services: services
                .into_iter()
                .map(|spec| {
                    let policy = RestartPolicy::new(now, spec.give_up_after);
                    ServiceState::new(spec, policy)
                })
                .collect(),
            settings,
            listeners,
            generation: Generation::new(1)?,
            children: Children::default(),
            signals,
            stopping: false,
            started_at: now,
            stop_request: None,
            notifier: Notifier::from_env(),
            ready_sent: false,
            reopen: None,
            control: None,
            upgrade: UpgradeState::default(),
        })
    }

    /// Runs until SIGTERM/SIGINT; `tick` is called once per loop turn (LIB-ZC's event_loop hook).
    pub(crate) fn run(
        &mut self,
        reload_config: &mut dyn FnMut() -> Result<Vec<Service>>,
        tick: &mut dyn FnMut(),
    ) -> Outcome {
        loop {
            tick();
            let pending = self.signals.take();
            // Reap on every turn, not only on SIGCHLD: a child that exited must never be taken
            // for a detached one (see settle_detaches), whatever else this turn did.
            self.reap();
            if pending.quit {
                self.request_stop(true);
            }
            if pending.stop {
                self.request_stop(false);
            }
            if let Some(graceful) = self.stop_request {
                // Removed at stop (SPEC §11); the stop request's reply went out already.
                self.control = None;
                self.stop(graceful);
                return Outcome::Stopped;
            }
            if pending.reopen {
                self.reopen_logs();
            }
            if pending.upgrade {
                let _ = self.begin_upgrade("SIGUSR2", None);
            }
            if pending.reload {
                let _ = self.reload_now(reload_config);
            }
            if pending.more || pending.fewer {
                self.scale_all(pending.more);
            }
            self.reap();
            self.settle_detaches();
            self.check_heartbeats();
            self.start_missing();
            if !self.ready_sent {
                self.ready_sent = true;
                let line = self.status_line(Instant::now());
                self.notifier.ready(&line);
                self.report_upgrade_ready();
            } else if self.notifier.is_active() {
                let line = self.status_line(Instant::now());
                self.notifier.status(&line);
            }
            self.notifier.ping_if_due(Instant::now());
            self.wait_for_events();
            self.upgrade_turn();
            self.serve_control(reload_config);
        }
    }

    /// Reloads now (SIGHUP, the control socket): the new generation's number, or the error
    /// that kept the running configuration.
    pub(crate) fn reload_now(
        &mut self,
        reload_config: &mut dyn FnMut() -> Result<Vec<Service>>,
    ) -> std::result::Result<u64, String> {
        self.notifier.reloading();
        let result = reload_config()
            .map_err(|e| e.to_string())
            .and_then(|services| self.reload(services));
        if let Err(e) = &result {
            log::error!("reload failed, keeping the running configuration: {e}");
        }
        self.notifier.send("READY=1");
        result
    }

    fn start_missing(&mut self) {
        let now = Instant::now();
        for index in 0..self.services.len() {
            let state = &self.services[index];
            if !state.policy.is_due(now) {
                continue;
            }
            let (name, want) = (state.spec.name.clone(), state.proc_count);
            for _ in self.children.serving(&name, self.generation.number)..want {
                let spawned = self.children.spawn(
                    &self.services[index].spec,
                    &self.generation,
                    &self.listeners,
                    &self.settings.config_dir,
                    &self.settings.child_args,
                );
                if let Err(e) = spawned {
                    let policy = &mut self.services[index].policy;
                    let delay = policy.spawn_failed(Instant::now());
                    log::error!(
                        "service={name} cannot start a child: {e}; next try in {}",
                        human_duration(delay)
                    );
                    if let Some(line) = policy.give_up_line(&name) {
                        log::error!("{line}");
                    }
                    break;
                }
            }
        }
    }

    /// Reaps every child that ended; a serving one is counted by its service's policy.
    fn reap(&mut self) {
        while let Some((pid, reason)) = children::reap_one() {
            let Some(child) = self.children.remove(pid) else {
                self.upgrade.child_exited(pid, &reason);
                continue;
            };
            let exit = child.exit(reason);
            let now = Instant::now();
            let child_state = child.state(self.generation.number);
            let state = self
                .services
                .iter_mut()
                .find(|s| s.spec.name == child.service);
            match (child_state == ChildState::Serving && !self.stopping, state) {
                (true, Some(state)) => {
                    let lived = child.uptime(now);
                    let was_failed = state.policy.phase(now) == Phase::Failed;
                    let delay = state.policy.exited(pid, exit, child.started, now);
                    let next = match state.policy.phase(now) {
                        Phase::Failed => "not restarting: the service failed".to_owned(),
                        _ => format!("restarting in {}", human_duration(delay)),
                    };
                    let line = format!(
                        "service={} pid={pid} exited: {exit} after {}; {next}",
                        child.service,
                        human_duration(lived)
                    );
                    if reason.is_clean() && delay.is_zero() {
                        log::info!("{line}")
                    } else {
                        log::warn!("{line}")
                    }
                    if let Some(line) = state.policy.give_up_line(&child.service)
                        && !was_failed
                    {
                        log::error!("{line}");
                    }
                }
                (_, state) => {
                    // A retired child's exit, or a hung one the master killed, is what status
                    // shows as the last one (it left for a reason worth seeing, draining or
                    // detached as it was); its detach was counted already.
                    if let Some(state) = state
                        && (exit.retired.is_some() || exit.hang.is_some())
                    {
                        state.policy.record_exit(pid, exit, child.started, now);
                    }
                    let role = if self.stopping {
                        "stopping"
                    } else if child_state == ChildState::Detached {
                        "detached"
                    } else if child.retiring {
                        "retiring"
                    } else {
                        "old-generation"
                    };
                    log::info!(
                        "service={} pid={pid} ({role}) exited: {exit}",
                        child.service
                    );
                }
            }
        }
    }

    /// Polls the signal pipe and every attached child's private pipe until something happens or
    /// the next scheduled start / detach check is due.
    fn wait_for_events(&mut self) {
        let now = Instant::now();
        let mut deadline: Option<Instant> = None;
        let mut sooner = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        for s in &self.services {
            let missing =
                self.children.serving(&s.spec.name, self.generation.number) < s.proc_count;
            // A failed service has no next start: polling for it would spin.
            if missing && s.policy.phase(now) != Phase::Failed {
                sooner(s.policy.next_start());
            }
        }
        if let Some(t) = self.notifier.next_ping(now) {
            sooner(t);
        }
        if let Some(t) = self.control.as_ref().and_then(ControlServer::next_deadline) {
            sooner(t);
        }
        if let Some(t) = self.children.next_detach_check() {
            sooner(t);
        }
        if let Some(t) = self.upgrade.deadline() {
            sooner(t);
        }
        if let Some(t) = self.next_heartbeat_check(now) {
            sooner(t);
        }
        if let Some(interval) = self.settings.tick_interval {
            sooner(now + interval);
        }
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(now).as_millis().min(60_000) as u16;
                PollTimeout::from(ms.max(if t > now { 1 } else { 0 }))
            }
        };
        let watched = self.children.watched();
        let mut fds = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        for pid in &watched {
            if let Some(fd) = self.children.get(*pid).and_then(|c| c.private.as_ref()) {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::empty()));
            }
        }
        // Last, so the zip with `watched` below stays aligned; served after every poll.
        if let Some(control) = &self.control {
            fds.push(PollFd::new(control.as_fd(), PollFlags::POLLIN));
        }
        if let Some(ready) = self.upgrade.fd() {
            fds.push(PollFd::new(ready, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => return,
            Ok(_) => {}
            Err(e) => {
                // Should never happen; never spin on it.
                log::error!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
        }
        let closed: Vec<i32> = watched
            .iter()
            .zip(&fds[1..])
            .filter(|(_, fd)| {
                fd.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
                })
            })
            .map(|(pid, _)| *pid)
            .collect();
        drop(fds);
        let now = Instant::now();
        for pid in closed {
            self.children.pipe_closed(pid, now);
        }
    }

    /// fd 4 closed a while ago and the child is still there: it detached. Its service's policy
    /// counts it (a detach right after the start is a young death).
    fn settle_detaches(&mut self) {
        let now = Instant::now();
        for pid in self.children.detach_checks_due(now) {
            let Some(child) = self.children.get_mut(pid) else {
                continue;
            };
            child.detach_check = None;
            child.private = None;
            if child.state(self.generation.number) != ChildState::Serving {
                continue;
            }
            child.detached = true;
            let retired = child.retired();
            let (service, started) = (child.service.clone(), child.started);
            let detached = self.children.detached(&service);
            let Some(state) = self.services.iter_mut().find(|s| s.spec.name == service) else {
                continue;
            };
            let was_failed = state.policy.phase(now) == Phase::Failed;
            let delay = state
                .policy
                .detached(started, Instant::now(), retired.is_some());
            let why = retired.map_or_else(String::new, |r| format!(" (retired: {r})"));
            log::info!(
                "service={service} pid={pid} detached from the master{why}; replacement in {}",
                human_duration(delay)
            );
            if let Some(line) = state.policy.give_up_line(&service)
                && !was_failed
            {
                log::error!("{line}");
            }
            if policy::too_many_detached(detached, state.spec.proc_count) {
                log::warn!("service={service} has {detached} detached processes still running");
            }
        }
    }

    /// Applies a new, validated config: keep unchanged listeners, bind new ones, close removed
    /// ones, start a new generation and softstop the old one; the new generation's number.
    fn reload(&mut self, services: Vec<Service>) -> std::result::Result<u64, String> {
        let generation = Generation::new(self.generation.number + 1)
            .and_then(|g| self.listeners.rebind(&services).map(|()| g))
            .map_err(|e| e.to_string())?;
        let old = std::mem::replace(&mut self.generation, generation);
        drop(old); // closes the old read end: the old generation softstops
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        for (pid, child) in self.children.iter_mut() {
            child.private = None;
            child.detach_check = None;
            if !names.contains(&child.service.as_str()) && !child.detached {
                log::info!(
                    "service={} pid={pid} stopping: its service was removed",
                    child.service
                );
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.services);
        self.services = services
            .into_iter()
            .map(|spec| {
                let give_up = spec.give_up_after;
                let policy = match old.iter().position(|o| o.spec.name == spec.name) {
                    Some(i) => old.swap_remove(i).policy.reloaded(now, give_up),
                    None => RestartPolicy::new(now, give_up),
                };
                ServiceState::new(spec, policy)
            })
            .collect();
        log::info!(
            "reloaded: generation={} services={} listeners={}",
            self.generation.number,
            self.services.len(),
            self.listeners.len()
        );
        Ok(self.generation.number)
    }
}
