//! The supervisor loop: spawn children per service, reap and restart them, reload, stop.
//!
//! Its parts, bottom up; each uses only those above it in this list:
//! - `listener_set`: the bound listeners by address, bound all or nothing on start and reload.
//! - `children`: starting a child (fd layout, argv), the child table (service, generation,
//!   pipes, serving/draining/detached), reaping into a typed exit reason, the generation pipe.
//! - `policy`: when a service may start its next child (crash-loop backoff, rounds, reset,
//!   reload, detach throttle); pure logic on `Instant`s, it only borrows `ExitReason`.
//! - this file: the loop that ties them to signals and `poll`, reload and stop.
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

mod children;
mod listener_set;
mod policy;

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::Result;
use crate::services::Service;
use crate::signals::Signals;
use children::{ChildState, Children, Generation};
use listener_set::ListenerSet;
pub use policy::Backoff;
use policy::RestartPolicy;

/// How long stop waits for children after SIGKILL before it gives up on them.
const STOP_GIVE_UP: Duration = Duration::from_secs(5);

/// A service as configured, with its restart policy.
#[derive(Debug)]
struct ServiceState {
    spec: Service,
    policy: RestartPolicy,
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
}

/// What the poll loop was told to do.
pub(crate) enum Outcome {
    /// SIGTERM/SIGINT: stopped cleanly.
    Stopped,
}

impl Supervisor {
    /// Binds every listener of `services` (all or nothing) and prepares the first generation.
    pub(crate) fn new(
        settings: Settings,
        services: Vec<Service>,
        signals: Signals,
    ) -> Result<Supervisor> {
        let listeners = ListenerSet::bind(&services)?;
        let now = Instant::now();
        Ok(Supervisor {
            settings,
            services: services
                .into_iter()
                .map(|spec| ServiceState {
                    spec,
                    policy: RestartPolicy::new(now),
                })
                .collect(),
            listeners,
            generation: Generation::new(1)?,
            children: Children::default(),
            signals,
            stopping: false,
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
            for name in pending.not_implemented() {
                log::warn!("{name} received: not implemented yet; ignored");
            }
            // Reap on every turn, not only on SIGCHLD: a child that exited must never be taken
            // for a detached one (see settle_detaches), whatever else this turn did.
            self.reap();
            if pending.stop {
                self.stop();
                return Outcome::Stopped;
            }
            if pending.reload {
                match reload_config() {
                    Ok(services) => self.reload(services),
                    Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
                }
            }
            self.reap();
            self.settle_detaches();
            self.start_missing();
            self.wait_for_events();
        }
    }

    fn start_missing(&mut self) {
        let now = Instant::now();
        for index in 0..self.services.len() {
            let state = &self.services[index];
            if !state.policy.is_due(now) {
                continue;
            }
            let (name, want) = (state.spec.name.clone(), state.spec.proc_count);
            for _ in self.children.serving(&name, self.generation.number)..want {
                let spawned = self.children.spawn(
                    &self.services[index].spec,
                    &self.generation,
                    &self.listeners,
                    &self.settings.config_dir,
                    &self.settings.child_args,
                );
                if let Err(e) = spawned {
                    let delay = self.services[index].policy.spawn_failed(Instant::now());
                    log::error!("service={name} cannot start a child: {e}; next try in {delay:?}");
                    break;
                }
            }
        }
    }

    /// Reaps every child that ended; a serving one is counted by its service's policy.
    fn reap(&mut self) {
        while let Some((pid, reason)) = children::reap_one() {
            let Some(child) = self.children.remove(pid) else {
                continue;
            };
            let now = Instant::now();
            let child_state = child.state(self.generation.number);
            let state = self
                .services
                .iter_mut()
                .find(|s| s.spec.name == child.service);
            match (child_state == ChildState::Serving && !self.stopping, state) {
                (true, Some(state)) => {
                    let lived = child.uptime(now);
                    let delay = state.policy.exited(pid, reason, child.started, now);
                    let line = format!(
                        "service={} pid={pid} exited: {reason} after {:.3}s; restarting in {delay:?}",
                        child.service,
                        lived.as_secs_f64()
                    );
                    if reason.is_clean() && delay.is_zero() {
                        log::info!("{line}")
                    } else {
                        log::warn!("{line}")
                    }
                }
                _ => {
                    let role = if self.stopping {
                        "stopping"
                    } else if child_state == ChildState::Detached {
                        "detached"
                    } else {
                        "old-generation"
                    };
                    log::info!(
                        "service={} pid={pid} ({role}) exited: {reason}",
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
            if self.children.serving(&s.spec.name, self.generation.number) < s.spec.proc_count {
                sooner(s.policy.next_start());
            }
        }
        if let Some(t) = self.children.next_detach_check() {
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
            let (service, started) = (child.service.clone(), child.started);
            let detached = self.children.detached(&service);
            let Some(state) = self.services.iter_mut().find(|s| s.spec.name == service) else {
                continue;
            };
            let delay = state.policy.detached(started, Instant::now());
            log::info!(
                "service={service} pid={pid} detached from the master; replacement in {delay:?}"
            );
            if policy::too_many_detached(detached, state.spec.proc_count) {
                log::warn!("service={service} has {detached} detached processes still running");
            }
        }
    }

    /// Applies a new, validated config: keep unchanged listeners, bind new ones, close removed
    /// ones, start a new generation and softstop the old one.
    fn reload(&mut self, services: Vec<Service>) {
        let generation = Generation::new(self.generation.number + 1)
            .and_then(|g| self.listeners.rebind(&services).map(|()| g));
        let generation = match generation {
            Ok(g) => g,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
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
                let policy = match old.iter().position(|o| o.spec.name == spec.name) {
                    Some(i) => old.swap_remove(i).policy.reloaded(now),
                    None => RestartPolicy::new(now),
                };
                ServiceState { spec, policy }
            })
            .collect();
        log::info!(
            "reloaded: generation={} services={} listeners={}",
            self.generation.number,
            self.services.len(),
            self.listeners.len()
        );
    }

    /// Closes listeners, SIGTERMs every child, waits (SIGKILL after the grace period).
    fn stop(&mut self) {
        log::info!("stopping: {} children", self.children.len());
        self.stopping = true;
        std::mem::take(&mut self.listeners).close();
        self.children.signal_all(Signal::SIGTERM);
        let grace = self.settings.stop_grace;
        let deadline = Instant::now() + grace;
        let mut killed_at: Option<Instant> = None;
        loop {
            self.reap();
            if self.children.is_empty() {
                break;
            }
            let now = Instant::now();
            let second_signal = self.signals.take().stop;
            if killed_at.is_none() && (now >= deadline || second_signal) {
                let why = if second_signal {
                    "a second stop signal".to_owned()
                } else {
                    format!("{grace:?}")
                };
                log::warn!(
                    "{} children still running after {why}; sending SIGKILL: pids {:?}",
                    self.children.len(),
                    self.children.pids()
                );
                self.children.signal_all(Signal::SIGKILL);
                killed_at = Some(now);
            }
            if killed_at.is_some_and(|t| now >= t + STOP_GIVE_UP) {
                log::error!(
                    "children {:?} did not exit after SIGKILL (uninterruptible sleep?); giving up on them",
                    self.children.pids()
                );
                break;
            }
            let wait = match killed_at {
                Some(_) => Duration::from_millis(100),
                None => deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100)),
            };
            let mut fds = [PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(wait.as_millis().max(1) as u16));
        }
        log::info!("stopped");
    }
}
