//! The server lifecycle shared by both modes: start from argv, serve, softstop/detach, drain.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::unistd::{Pid, getppid};
use zmaster_core::config::Config;
use zmaster_core::logging::{self, LogTarget};
use zmaster_core::protocol::{self, GENERATION_FD, PRIVATE_FD};
use zmaster_pool::Stall;

use super::args::{self, Launch, Settings};
use super::control::{self, Control, Event};
use super::error::{Error, ErrorKind, Result};
use super::lifecycle::Watch;
use super::listeners::{self, ServiceListener};
use super::sys;
use heartbeat::Heartbeat;

// Declared here, not in `runtime/mod.rs`: only the server lifecycle uses it.
#[path = "board.rs"]
mod board;
#[path = "heartbeat.rs"]
mod heartbeat;

/// How long a softstop or detach may drain when `server-stop-on-softstop-after` is 0.
pub const DEFAULT_DRAIN_LIMIT: Duration = Duration::from_secs(3600);

/// Whether log records go to stderr (then start-up errors are not logged twice).
static LOGS_TO_STDERR: AtomicBool = AtomicBool::new(true);

/// Whether start-up errors must also be logged (the log does not go to stderr, where
/// [`server_main`](super::server_main) prints them anyway).
pub(super) fn logs_elsewhere() -> bool {
    !LOGS_TO_STDERR.load(Ordering::Relaxed)
}

/// The config of the running server (empty before one started).
static CONFIG: Mutex<Option<Arc<Config>>> = Mutex::new(None);

/// The effective config of the running server (SPEC §2 precedence): for handlers that read
/// their own keys. Empty before [`Server::from_args`] succeeded.
pub fn config() -> Arc<Config> {
    CONFIG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

/// What a mode's running machinery lets the runtime do during a softstop or detach.
pub trait Serving {
    /// Stops accepting at once: close (deregister) every listener; idempotent.
    fn stop_accepting(&self);
    /// Connections accepted and not yet closed.
    fn active_connections(&self) -> usize;
    /// Blocks until no connection is open or `deadline` passes; true when idle.
    fn wait_idle(&self, deadline: Instant) -> bool;
    /// Connections accepted since the start (`server-max-use`; default: not counted, 0).
    fn accepted_total(&self) -> u64 {
        0
    }
    /// Since when no connection has been open; `None` while one is (`server-max-idle`;
    /// default: never idle).
    fn idle_since(&self) -> Option<Instant> {
        None
    }
    /// The threads busy in one loop turn for longer than `timeout` (`server-hang-timeout`;
    /// default: none watched).
    fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        let _ = timeout;
        Vec::new()
    }
    /// Runs `wake` (on an accepting thread, at most once or twice) when the accept budget
    /// of `server-max-use` is spent (default: never; the limit is then polled).
    fn on_budget_spent(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }
}

/// How the serving phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `stop_notify` asked the server to return.
    Stopped,
    /// Softstop or detach, and every open connection finished.
    Drained,
    /// Softstop without a `before_softstop` hook or deadline: exited at once.
    Immediate,
    /// The drain deadline passed with connections still open.
    DeadlinePassed {
        /// Connections still open at the deadline.
        open: usize,
    },
}

/// A server after start-up: argv parsed, config loaded, logging on, listeners in hand.
#[derive(Debug)]
pub struct Server {
    ident: String,
    launch: Launch,
    config: Arc<Config>,
    settings: Settings,
    listeners: Vec<ServiceListener>,
    control: Arc<Control>,
    generation: Option<OwnedFd>,
    parent: Pid,
    /// The master's heartbeat memfd (SPEC §13), when it gave one (its `zm-heartbeat` thread
    /// holds the other reference).
    heartbeat: Option<Arc<Heartbeat>>,
    /// The service's board (the master's `ZM_BOARD`), when it gave one.
    board: Option<Arc<zmaster_pool::Board>>,
}

impl Server {
    /// Starts a server from argv (`argv[0]` included; non-UTF-8 arguments are converted lossily):
    /// `MASTER` adopts fds 3, 4 and the listeners of `-server-service name:Tfd,...`; `alone`
    /// binds the addresses of `-server-service` (from the command line or a `-config` file).
    /// Loads the config (command line > `-config` files > `server-config-path/*.gcf`), reads
    /// the [`Settings`] and sets up logging from `server-log` with the program's basename.
    ///
    /// `MASTER` is only for a process a master started: fds 3, 4 and the listed listener fds
    /// are taken over (closed when dropped) whatever they are. They are adopted before the
    /// config is read or logging is set up, and only once `-server-service` parsed.
    ///
    /// # Errors
    /// `ErrorKind::Usage` for a bad argv; config, protocol and bind errors otherwise.
    pub fn from_args<I, S>(args: I) -> Result<Server>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.into().to_string_lossy().into_owned())
            .collect();
        let invocation = args::parse_args(args)?;
        let parent = getppid();
        // Adopt the master's fds before anything (the logger, say) could open an fd of its own
        // and take a number the master should have passed.
        let mut heartbeat_fd = None;
        let mut board_map = None;
        let inherited = match invocation.launch {
            Launch::Master => {
                let fds = adopt_master_fds(&invocation)?;
                // Its number sits just above the listeners: adopted with them, before any fd
                // of ours could be opened (the timeout it beats for is read below).
                heartbeat_fd = Some(Heartbeat::from_env(Duration::ZERO));
                board_map = Some(board::from_env());
                // From here on the master's PR_SET_PDEATHSIG(SIGHUP) means softstop, not death.
                control::catch_hangup().map_err(|e| Error::io("catch SIGHUP", e))?;
                Some(fds)
            }
            Launch::Alone => None,
        };
        let config = invocation.command_line.server_config()?;
        let settings = Settings::from_config(&config)?;
        let target = LogTarget::parse(config.get_str("server-log", ""))
            .map_err(|e| e.at_location(config.location("server-log")))?;
        logging::init(&target, &invocation.ident, settings.log_level)?;
        LOGS_TO_STDERR.store(target == LogTarget::Stderr, Ordering::Relaxed);
        let heartbeat = match heartbeat_fd {
            Some(Ok(Some(h))) => {
                let h = Arc::new(h.with_timeout(settings.limits.hang_timeout));
                // Beats for the process's whole life, whatever its main thread is busy with
                // (a slow before_softstop hook must not look like a hang to the master).
                if let Err(e) = h.start() {
                    log::warn!("cannot start the heartbeat thread: {e}; not watched");
                }
                Some(h)
            }
            Some(Err(e)) => {
                log::warn!("no heartbeat to the master: {e}");
                None
            }
            _ => None,
        };
        let board = match board_map {
            Some(Ok(board)) => board,
            Some(Err(e)) => {
                log::warn!("no balance with the sibling processes: {e}");
                None
            }
            None => None,
        };
        // SPEC §13: a soft limit of 1024 (a common default) makes a busy server fail with
        // EMFILE long before its hard limit; every server takes the hard limit at start.
        match zmaster_pool::raise_nofile_limit() {
            Ok((old, new)) => log::info!("nofile soft limit {old} -> {new}"),
            Err(e) => log::warn!("cannot raise the nofile soft limit: {e}"),
        }
        let (listeners, generation, private) = match inherited {
            Some(fds) => (fds.listeners, Some(fds.generation), Some(fds.private)),
            None => {
                let spec = config.get_str("server-service", "");
                if spec.is_empty() {
                    return Err(Error::new(ErrorKind::Usage, "missing -server-service"));
                }
                let listeners = listeners::bind_all(spec).map_err(|e| {
                    let at = args::located(&config, "server-service");
                    if at.is_empty() {
                        e
                    } else {
                        Error::new(e.kind(), format!("{at}{e}"))
                    }
                })?;
                (listeners, None, None)
            }
        };
        let config = Arc::new(config);
        *CONFIG.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&config));
        let control = Control::install(private);
        if invocation.launch == Launch::Master && parent.as_raw() == 1 {
            control.softstop("the master was gone at start");
        }
        Ok(Server {
            ident: invocation.ident,
            launch: invocation.launch,
            config,
            settings,
            listeners,
            control,
            generation,
            parent,
            heartbeat,
            board,
        })
    }

    /// The program's basename (the log ident).
    pub fn ident(&self) -> &str {
        &self.ident
    }

    /// `MASTER` or `alone`.
    pub fn launch(&self) -> Launch {
        self.launch
    }

    /// The effective config.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The per-service settings with defaults applied.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The service's board from the master (`ZM_BOARD`), for the acceptor's balance
    /// between sibling processes; `None` when the master gave none.
    pub fn board(&self) -> Option<Arc<zmaster_pool::Board>> {
        self.board.clone()
    }

    /// Hands over the listeners (in `-server-service` order); later calls return none.
    pub fn take_listeners(&mut self) -> Vec<ServiceListener> {
        std::mem::take(&mut self.listeners)
    }

    /// Serves until softstop, detach or `stop_notify`, then drains per SPEC §6 and returns.
    ///
    /// Softstop: `serving.stop_accepting()` at once, then `before_softstop` (if any), then wait
    /// for open connections up to `server-stop-on-softstop-after` (or [`DEFAULT_DRAIN_LIMIT`]
    /// when that is 0 and the hook is set; with neither, return at once). Detach: the same
    /// without the hook, with the deadline or [`DEFAULT_DRAIN_LIMIT`]. `stop_notify` ends the
    /// wait at any point.
    pub fn run(
        mut self,
        serving: &dyn Serving,
        before_softstop: Option<Box<dyn FnOnce()>>,
    ) -> Outcome {
        if let Some(generation) = self.generation.take() {
            let watcher =
                control::spawn_watcher(Arc::clone(&self.control), generation, self.parent);
            if let Err(e) = watcher {
                log::error!("cannot start the softstop watcher thread: {e}; stopping softly");
                self.control.softstop("no watcher thread");
            }
        }
        let event = self.wait_event(serving);
        serving.stop_accepting();
        let after = self.settings.stop_on_softstop_after;
        let limit = if after.is_zero() {
            DEFAULT_DRAIN_LIMIT
        } else {
            after
        };
        let open = serving.active_connections();
        let deadline = match event {
            Event::StopNotified => {
                log::info!("stop_notify: returning open={open}");
                return Outcome::Stopped;
            }
            Event::Softstop(reason) => {
                log::info!("softstop reason={reason:?} open={open}");
                match before_softstop {
                    Some(hook) => {
                        hook();
                        Instant::now() + limit
                    }
                    None if after.is_zero() => return Outcome::Immediate,
                    None => Instant::now() + limit,
                }
            }
            Event::Detached => {
                log::info!("detached from the master open={open}");
                Instant::now() + limit
            }
            Event::Retired(reason) => {
                log::info!("retiring reason={reason} open={open}");
                Instant::now() + limit
            }
        };
        self.drain(serving, deadline)
    }

    /// Waits for the event that ends serving, checking the SPEC §13 limits every tick while
    /// one is set (a limit reached retires the server: that is the event then).
    fn wait_event(&self, serving: &dyn Serving) -> Event {
        let mut watch = Watch::new(&self.settings.limits);
        let Some(mut next_check) = watch.next_tick(serving).map(|t| Instant::now() + t) else {
            return self.control.wait_event();
        };
        // The accept budget (server-max-use) spent: retire now, not at the next tick (the
        // acceptor stopped there, so until the detach nobody takes new connections).
        let control = Arc::clone(&self.control);
        serving.on_budget_spent(Box::new(move || control.nudge()));
        loop {
            if let Some(event) = self.control.wait_event_until(Some(next_check)) {
                return event;
            }
            let now = Instant::now();
            if self.control.take_nudge() || next_check <= now {
                if let Some(reason) = watch.check(serving, now) {
                    self.retire(reason);
                }
                let Some(tick) = watch.next_tick(serving) else {
                    return self.control.wait_event();
                };
                next_check = now + tick;
            }
        }
    }

    /// Retires the server for `reason`, telling the master why first (the reason byte must be
    /// there before fd 4 closes: the master reads it when it sees the detach).
    fn retire(&self, reason: &'static str) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.set_reason(reason);
        }
        if !self.control.retire(reason)
            && let Some(heartbeat) = &self.heartbeat
        {
            // Already stopping for another cause (a softstop): that is why it leaves.
            heartbeat.set_reason("");
        }
    }

    fn drain(&self, serving: &dyn Serving, deadline: Instant) -> Outcome {
        // Wake at least this often to look at stop_notify's time.
        let slice = Duration::from_millis(200);
        loop {
            let open = serving.active_connections();
            if open == 0 {
                log::info!("drained: every connection finished");
                return Outcome::Drained;
            }
            let now = Instant::now();
            if self.control.stop_at().is_some_and(|at| at <= now) {
                log::info!("stop_notify during drain: returning open={open}");
                return Outcome::Stopped;
            }
            if now >= deadline {
                log::warn!("drain deadline passed: exiting open={open}");
                return Outcome::DeadlinePassed { open };
            }
            let mut until = deadline.min(now + slice);
            if let Some(at) = self.control.stop_at() {
                until = until.min(at);
            }
            serving.wait_idle(until);
        }
    }
}

/// What a master hands a child (SPEC §5), adopted.
struct MasterFds {
    generation: OwnedFd,
    private: OwnedFd,
    listeners: Vec<ServiceListener>,
}

/// Adopts fds 3, 4 and the listeners named by the command line's `-server-service`.
fn adopt_master_fds(invocation: &args::Invocation) -> Result<MasterFds> {
    let spec = invocation
        .command_line
        .overrides
        .get("server-service")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::new(ErrorKind::Usage, "missing -server-service"))?;
    // Parse first: nothing is adopted unless the whole value is well-formed.
    let parsed = protocol::parse_server_service(spec)?;
    let adopt = |fd, what: &str| {
        sys::adopt_inherited_fd(fd).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("fd {fd} ({what}) from the master (SPEC §5)"),
            )
            .with_source(e)
        })
    };
    Ok(MasterFds {
        generation: adopt(GENERATION_FD, "generation pipe")?,
        private: adopt(PRIVATE_FD, "private pipe")?,
        listeners: listeners::inherit(parsed)?,
    })
}
