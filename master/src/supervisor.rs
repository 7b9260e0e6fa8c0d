//! The supervisor: spawn children per service, reap and restart them, reload, stop.
//!
//! Design notes (the reload handshake):
//! - One generation pipe per generation. Children get its write end as fd 3; the master keeps
//!   the read end (CLOEXEC, so no child holds it). Closing the read end makes every child of that
//!   generation see POLLERR on fd 3: softstop. A dying master closes it too.
//! - Each child gets the read end of a private pipe as fd 4; the master polls the write end.
//!   POLLERR there means the child closed fd 4: it exited or detached. Exits close fd 4 a moment
//!   before the child becomes reapable, so the master waits [`DETACH_SETTLE`] and calls it a
//!   detach only if the child was not reaped meanwhile — a crashing child is never mistaken for
//!   a detached one (which would bypass the crash-loop backoff).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use zmaster_core::addr::Address;
use zmaster_core::protocol;

use crate::backoff::{self, Backoff};
use crate::error::{Error, Result};
use crate::listeners::{self, Listener};
use crate::services::Service;
use crate::signals::Signals;
use crate::sys;

/// How long after fd 4 closes a child must still be unreaped to count as detached.
pub(crate) const DETACH_SETTLE: Duration = Duration::from_millis(50);
/// How long stop waits for children after SIGKILL before it gives up on them.
const STOP_GIVE_UP: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Child {
    service: String,
    generation: u64,
    started: Instant,
    /// The write end of the child's private pipe, while the child is attached.
    private: Option<OwnedFd>,
    /// Set when fd 4 closed: decide at this time whether it was a detach.
    detach_check: Option<Instant>,
    detached: bool,
}

#[derive(Debug)]
struct ServiceState {
    spec: Service,
    backoff: Backoff,
    next_start: Instant,
    /// When the backoff was last raised: children started before it belong to a round that
    /// already counted, so a burst of N young deaths raises the delay once, not N times.
    last_bump: Option<Instant>,
}

impl ServiceState {
    fn new(spec: Service, now: Instant) -> ServiceState {
        ServiceState {
            spec,
            backoff: Backoff::default(),
            next_start: now,
            last_bump: None,
        }
    }

    /// A child of this service stopped counting (it exited or detached) after `lived`;
    /// returns the delay before the next start.
    ///
    /// A young death (an abnormal exit or a detach within 1 s, a clean exit within 100 ms)
    /// raises the backoff once per round of starts; anything older resets it. Clean exits that
    /// lived a little are normal for servers that exit after N requests (Postfix's max_use).
    fn child_gone(&mut self, started: Instant, lived: Duration, clean: bool) -> Duration {
        let now = Instant::now();
        let young = if clean {
            lived < backoff::START
        } else {
            lived < backoff::HEALTHY
        };
        if !young {
            self.backoff = Backoff::default();
            return self.next_start.saturating_duration_since(now);
        }
        if self.last_bump.is_none_or(|bump| started >= bump) {
            let delay = self.backoff.on_exit(lived);
            self.last_bump = Some(now);
            self.next_start = self.next_start.max(now + delay);
        }
        self.next_start.saturating_duration_since(now)
    }
}

/// A generation: its pipe (read end kept, write end handed to children).
#[derive(Debug)]
struct Generation {
    number: u64,
    _read: OwnedFd,
    write: OwnedFd,
}

impl Generation {
    fn new(number: u64) -> Result<Generation> {
        let (read, write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("create generation pipe", e.into()))?;
        Ok(Generation {
            number,
            _read: read,
            write,
        })
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
    listeners: HashMap<Address, Listener>,
    generation: Generation,
    children: BTreeMap<i32, Child>,
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
        let listeners = bind_all(&services, HashMap::new()).map_err(|(e, _kept)| e)?;
        let now = Instant::now();
        Ok(Supervisor {
            settings,
            services: services
                .into_iter()
                .map(|spec| ServiceState::new(spec, now))
                .collect(),
            listeners,
            generation: Generation::new(1)?,
            children: BTreeMap::new(),
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

    fn attached_count(&self, service: &str) -> usize {
        self.children
            .values()
            .filter(|c| {
                c.service == service && c.generation == self.generation.number && !c.detached
            })
            .count()
    }

    fn start_missing(&mut self) {
        let now = Instant::now();
        for index in 0..self.services.len() {
            let (name, want, next_start) = {
                let s = &self.services[index];
                (s.spec.name.clone(), s.spec.proc_count, s.next_start)
            };
            if next_start > now {
                continue;
            }
            for _ in self.attached_count(&name)..want {
                if let Err(e) = self.spawn(index) {
                    let state = &mut self.services[index];
                    let delay = state.backoff.on_exit(Duration::ZERO);
                    state.next_start = Instant::now() + delay;
                    log::error!("service={name} cannot start a child: {e}; next try in {delay:?}");
                    break;
                }
            }
        }
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let spec = &self.services[index].spec;
        let (private_read, private_write) =
            pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("create private pipe", e.into()))?;
        let mut fds = vec![self.generation.write.as_raw_fd(), private_read.as_raw_fd()];
        let mut kinds = Vec::with_capacity(spec.addrs.len());
        for sa in &spec.addrs {
            let listener = self.listeners.get(&sa.addr).ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Io,
                    format!("listener {} is not bound", sa.addr),
                )
            })?;
            fds.push(listener.fd().as_raw_fd());
            kinds.push((sa.name.as_str(), sa.addr.kind()));
        }
        let inherited = protocol::assign_listener_fds(kinds);
        let cf_path = absolute(&spec.cf_path);
        let mut argv = protocol::child_argv(
            &spec.command,
            &self.settings.config_dir,
            &cf_path,
            &inherited,
        );
        argv.extend(self.settings.child_args.iter().cloned());
        let child = sys::ChildSpec {
            program: &spec.command,
            argv: &argv,
            fds,
            chroot: spec.chroot.as_deref(),
            chdir: spec.chdir.as_deref(),
        };
        let pid = sys::spawn_child(&child)
            .map_err(|e| Error::io(format!("start {}", spec.command.display()), e))?;
        drop(private_read);
        log::debug!(
            "service={} pid={pid} generation={} started",
            spec.name,
            self.generation.number
        );
        self.children.insert(
            pid as i32,
            Child {
                service: spec.name.clone(),
                generation: self.generation.number,
                started: Instant::now(),
                private: Some(private_write),
                detach_check: None,
                detached: false,
            },
        );
        Ok(())
    }

    fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exit status {code}")),
                Ok(WaitStatus::Signaled(pid, sig, core)) => (
                    pid,
                    format!(
                        "killed by {sig}{}",
                        if core { " (core dumped)" } else { "" }
                    ),
                ),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("waitpid failed: {e}");
                    return;
                }
            };
            let Some(child) = self.children.remove(&pid.as_raw()) else {
                continue;
            };
            let lived = child.started.elapsed();
            let current = child.generation == self.generation.number && !child.detached;
            let state = self
                .services
                .iter_mut()
                .find(|s| s.spec.name == child.service);
            match (current && !self.stopping, state) {
                (true, Some(state)) => {
                    let clean = status == "exit status 0";
                    let delay = state.child_gone(child.started, lived, clean);
                    let line = format!(
                        "service={} pid={pid} exited: {status} after {:.3}s; restarting in {delay:?}",
                        child.service,
                        lived.as_secs_f64()
                    );
                    if clean && delay.is_zero() {
                        log::info!("{line}")
                    } else {
                        log::warn!("{line}")
                    }
                }
                _ => {
                    let role = if self.stopping {
                        "stopping"
                    } else if child.detached {
                        "detached"
                    } else {
                        "old-generation"
                    };
                    log::info!(
                        "service={} pid={pid} ({role}) exited: {status}",
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
            if self
                .children
                .values()
                .filter(|c| {
                    c.service == s.spec.name
                        && c.generation == self.generation.number
                        && !c.detached
                })
                .count()
                < s.spec.proc_count
            {
                sooner(s.next_start);
            }
        }
        for c in self.children.values() {
            if let Some(t) = c.detach_check {
                sooner(t);
            }
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
        let watched: Vec<i32> = self
            .children
            .iter()
            .filter(|(_, c)| c.private.is_some() && c.detach_check.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        let mut fds = Vec::with_capacity(watched.len() + 1);
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        for pid in &watched {
            if let Some(fd) = self.children[pid].private.as_ref() {
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
        for pid in closed {
            if let Some(child) = self.children.get_mut(&pid) {
                child.detach_check = Some(Instant::now() + DETACH_SETTLE);
            }
        }
    }

    /// fd 4 closed a while ago and the child is still there: it detached.
    ///
    /// A detach within 1 s of the start counts as a young death for the crash-loop backoff: a
    /// server that closes fd 4 at start-up (a wrapper script, `closefrom(3)`) must not make the
    /// master fork without limit.
    fn settle_detaches(&mut self) {
        let now = Instant::now();
        let due: Vec<i32> = self
            .children
            .iter()
            .filter(|(_, c)| c.detach_check.is_some_and(|t| t <= now))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            let Some(child) = self.children.get_mut(&pid) else {
                continue;
            };
            child.detach_check = None;
            child.private = None;
            if child.generation != self.generation.number || child.detached {
                continue;
            }
            child.detached = true;
            let (service, started) = (child.service.clone(), child.started);
            let detached = self
                .children
                .values()
                .filter(|c| c.detached && c.service == service)
                .count();
            let Some(state) = self.services.iter_mut().find(|s| s.spec.name == service) else {
                continue;
            };
            let delay = state.child_gone(started, started.elapsed(), false);
            log::info!(
                "service={service} pid={pid} detached from the master; replacement in {delay:?}"
            );
            if detached >= 4 * state.spec.proc_count.max(1) {
                log::warn!("service={service} has {detached} detached processes still running");
            }
        }
    }

    /// Applies a new, validated config: keep unchanged listeners, bind new ones, close removed
    /// ones, start a new generation and softstop the old one.
    fn reload(&mut self, services: Vec<Service>) {
        let generation = match Generation::new(self.generation.number + 1) {
            Ok(g) => g,
            Err(e) => {
                log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        let current = std::mem::take(&mut self.listeners);
        let listeners = match bind_all(&services, current) {
            Ok(listeners) => listeners,
            Err((e, kept)) => {
                self.listeners = kept;
                log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        let (used, removed) = split_listeners(listeners, &services);
        close_listeners(removed);
        self.listeners = used;
        let old = std::mem::replace(&mut self.generation, generation);
        drop(old); // closes the old read end: the old generation softstops
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        for (pid, child) in &mut self.children {
            child.private = None;
            child.detach_check = None;
            if !names.contains(&child.service.as_str()) && !child.detached {
                log::info!(
                    "service={} pid={pid} stopping: its service was removed",
                    child.service
                );
                let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
            }
        }
        // The new generation starts at once (SPEC §4), but a service keeps its backoff level:
        // if the new children die young too, the delay goes on doubling from where it was
        // instead of starting again at 100 ms (a HUP from logrotate must not reset a crash loop).
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.services);
        self.services = services
            .into_iter()
            .map(|spec| {
                let mut state = ServiceState::new(spec, now);
                if let Some(i) = old.iter().position(|o| o.spec.name == state.spec.name) {
                    state.backoff = old.swap_remove(i).backoff;
                }
                state
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
        close_listeners(std::mem::take(&mut self.listeners).into_values());
        self.signal_all(Signal::SIGTERM);
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
                    self.children.keys().collect::<Vec<_>>()
                );
                self.signal_all(Signal::SIGKILL);
                killed_at = Some(now);
            }
            if killed_at.is_some_and(|t| now >= t + STOP_GIVE_UP) {
                log::error!(
                    "children {:?} did not exit after SIGKILL (uninterruptible sleep?); giving up on them",
                    self.children.keys().collect::<Vec<_>>()
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

    fn signal_all(&self, signal: Signal) {
        for pid in self.children.keys() {
            let _ = kill(Pid::from_raw(*pid), signal);
        }
    }
}

/// Binds every address of `services`, reusing fds from `existing` for unchanged addresses.
/// On failure nothing new stays bound and `existing` is handed back whole.
fn bind_all(
    services: &[Service],
    mut existing: HashMap<Address, Listener>,
) -> Result<HashMap<Address, Listener>, (Error, HashMap<Address, Listener>)> {
    let mut out: HashMap<Address, Listener> = HashMap::new();
    let mut fresh: Vec<Address> = Vec::new();
    for s in services {
        for sa in &s.addrs {
            if out.contains_key(&sa.addr) {
                continue;
            }
            if let Some(l) = existing.remove(&sa.addr) {
                out.insert(sa.addr.clone(), l);
                continue;
            }
            match listeners::bind(&sa.addr, s.backlog, s.unix_mode) {
                Ok(l) => {
                    fresh.push(sa.addr.clone());
                    out.insert(sa.addr.clone(), l);
                }
                Err(e) => {
                    for addr in &fresh {
                        if let Some(l) = out.remove(addr) {
                            l.close();
                        }
                    }
                    existing.extend(out);
                    return Err((
                        Error::new(
                            crate::error::ErrorKind::Io,
                            format!("service {}: {e}", s.name),
                        ),
                        existing,
                    ));
                }
            }
        }
    }
    // Whatever is left in `existing` is no longer configured: return it with the rest so the
    // caller decides when to close it.
    out.extend(existing);
    Ok(out)
}

/// Splits listeners into those some service uses and those none does.
fn split_listeners(
    mut all: HashMap<Address, Listener>,
    services: &[Service],
) -> (HashMap<Address, Listener>, Vec<Listener>) {
    let mut used = HashMap::new();
    for s in services {
        for sa in &s.addrs {
            if let Some(l) = all.remove(&sa.addr) {
                used.insert(sa.addr.clone(), l);
            }
        }
    }
    (used, all.into_values().collect())
}

fn close_listeners(listeners: impl IntoIterator<Item = Listener>) {
    for l in listeners {
        log::debug!("closing listener {}", l.addr());
        l.close();
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
