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

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::listeners::{self, Listener};
use crate::services::Service;
use crate::signals::Signals;
use crate::sys;

/// How long after fd 4 closes a child must still be unreaped to count as detached.
pub(crate) const DETACH_SETTLE: Duration = Duration::from_millis(50);

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
}

/// The running master.
pub(crate) struct Supervisor {
    settings: Settings,
    services: Vec<ServiceState>,
    listeners: HashMap<Address, Listener>,
    generation: Generation,
    children: BTreeMap<i32, Child>,
    signals: Signals,
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
                .map(|spec| ServiceState {
                    spec,
                    backoff: Backoff::default(),
                    next_start: now,
                })
                .collect(),
            listeners,
            generation: Generation::new(1)?,
            children: BTreeMap::new(),
            signals,
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
            if pending.child {
                self.reap();
            }
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
        let argv = protocol::child_argv(
            &spec.command,
            &self.settings.config_dir,
            &cf_path,
            &inherited,
        );
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
            match (current, state) {
                (true, Some(state)) => {
                    let delay = state.backoff.on_exit(lived);
                    state.next_start = state.next_start.max(Instant::now() + delay);
                    let clean = status == "exit status 0";
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
                    let role = if child.detached {
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
            Ok(0) | Err(_) => return,
            Ok(_) => {}
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
    fn settle_detaches(&mut self) {
        let now = Instant::now();
        for (pid, child) in &mut self.children {
            if child.detach_check.is_some_and(|t| t <= now) {
                child.detach_check = None;
                child.private = None;
                if child.generation == self.generation.number && !child.detached {
                    child.detached = true;
                    log::info!(
                        "service={} pid={pid} detached from the master; starting a replacement",
                        child.service
                    );
                }
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
        let now = Instant::now();
        self.services = services
            .into_iter()
            .map(|spec| ServiceState {
                spec,
                backoff: Backoff::default(),
                next_start: now,
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
        close_listeners(std::mem::take(&mut self.listeners).into_values());
        for pid in self.children.keys() {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.settings.stop_grace;
        let mut killed = false;
        while !self.children.is_empty() {
            self.reap_quietly();
            if self.children.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline && !killed {
                log::warn!(
                    "{} children still running after {:?}; sending SIGKILL",
                    self.children.len(),
                    self.settings.stop_grace
                );
                for pid in self.children.keys() {
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
                killed = true;
            }
            let wait = if killed {
                Duration::from_millis(100)
            } else {
                deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100))
            };
            let mut fds = [PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(wait.as_millis().max(1) as u16));
            let pending = self.signals.take();
            if pending.stop && !killed {
                log::warn!(
                    "second stop signal: sending SIGKILL to {} children",
                    self.children.len()
                );
                for pid in self.children.keys() {
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
                killed = true;
            }
        }
        log::info!("stopped");
    }

    fn reap_quietly(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.children.remove(&pid.as_raw());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
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
