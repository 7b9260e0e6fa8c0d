//! zmaster: the master process of the zmaster framework, as a library and the `zmaster` binary.
//!
//! The master reads one config file per service (`config_dir/*.cf`), binds every listener
//! itself, forks `server-proc-count` server processes per service that inherit them (LIB-ZC's
//! fd layout: see [`zmaster_core::protocol`]), restarts children that exit (with crash-loop
//! backoff), reloads on SIGHUP without dropping a connection, and stops on SIGTERM/SIGINT.
//!
//! ```no_run
//! // An embedded master with LIB-ZC's hooks.
//! let hooks = zmaster::Hooks {
//!     before_service: Some(Box::new(|| log::info!("listeners bound, starting children"))),
//!     ..zmaster::Hooks::default()
//! };
//! std::process::exit(zmaster::main(["-C", "/etc/zmaster"].map(String::from), hooks));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
mod error;
mod listeners;
mod logsvc;
mod pidfile;
mod services;
mod signals;
mod supervisor;
#[allow(unsafe_code)]
mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zmaster_core::cli::CommandLine;
use zmaster_core::config::{Config, ServiceFile};
use zmaster_core::logging::{self, LogTarget};

pub use error::{Error, ErrorKind, Result};
pub use logsvc::{LogService, Rotation};
pub use pidfile::{LockState, PidFile, try_lock};
pub use services::{DEFAULT_BACKLOG, Service, load_config_from_dir, validate};
pub use supervisor::Backoff;

/// The default grace period between SIGTERM and SIGKILL at stop (`master-stop-timeout`).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// A config loader: given the config dir, returns its service files (LIB-ZC's
/// `zmaster_server_load_config`).
pub type LoadConfig = Box<dyn FnMut(&Path) -> Result<Vec<ServiceFile>>>;

/// LIB-ZC's master hooks.
#[derive(Default)]
pub struct Hooks {
    /// Called once, after every listener is bound and before the first children start
    /// (`zmaster_server_before_service`).
    pub before_service: Option<Box<dyn FnMut()>>,
    /// Called on every turn of the master's event loop, and at least once a second
    /// (`zmaster_server_event_loop`).
    pub event_loop: Option<Box<dyn FnMut()>>,
    /// Replaces [`load_config_from_dir`] at start and at every reload
    /// (`zmaster_server_load_config`).
    pub load_config: Option<LoadConfig>,
}

/// How often the `event_loop` hook runs while the master is idle.
const EVENT_LOOP_INTERVAL: Duration = Duration::from_secs(1);

const KNOWN_OPTIONS: [&str; 7] = [
    "C",
    "pid-file",
    "try-lock",
    "log-service",
    "master-stop-timeout",
    "verbose",
    "help",
];

const USAGE: &str = "usage: zmaster -C CONFIG_DIR [-pid-file FILE] [--try-lock] [-log-service SOCK,DIR[,day|hour]] [-master-stop-timeout DURATION] [--verbose] [-key value ...]";

/// Keys of the master/server protocol: the master passes each child its own values (the
/// listener fds, the config dir), so an override of them stops at the master; appended after
/// `-server-service` it would replace the child's fd map.
const PROTOCOL_KEYS: [&str; 2] = ["server-service", "server-config-path"];

/// The `-key value` pairs a child gets after `-server-service` (in key order).
fn child_args(overrides: &Config) -> Vec<OsString> {
    overrides
        .keys()
        .filter(|key| !PROTOCOL_KEYS.contains(key))
        .filter_map(|key| Some([format!("-{key}").into(), overrides.get(key)?.into()]))
        .flatten()
        .collect()
}

/// Runs the master with `args` (without `argv[0]`) and returns the process exit status:
/// 0 after a clean stop (or `--try-lock`: not running), 1 on any error (one line on stderr).
pub fn main<I, S>(args: I, hooks: Hooks) -> i32
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    match run(args, hooks) {
        Ok(code) => code,
        Err(e) => {
            if log::max_level() == log::LevelFilter::Off {
                eprintln!("zmaster: {e}");
            } else {
                log::error!("{e}");
            }
            1
        }
    }
}

fn run<I, S>(args: I, mut hooks: Hooks) -> Result<i32>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let cli = CommandLine::parse(args)?;
    let opts = &cli.overrides;
    if let Some(extra) = cli.positional.first() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("unexpected argument {extra:?}; {USAGE}"),
        ));
    }
    if opts.get_bool("help", false).unwrap_or(false) {
        println!("{USAGE}");
        return Ok(0);
    }
    // Any other `-key value` overrides that key in every service (SPEC §4's `[-key value ...]`).
    let mut overrides = opts.clone();
    for key in KNOWN_OPTIONS {
        overrides.remove(key);
    }
    let child_args = child_args(&overrides);
    let pid_file = opts
        .get("pid-file")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if opts.get_bool("try-lock", false)? {
        let Some(path) = pid_file else {
            return Err(Error::new(
                ErrorKind::Usage,
                "--try-lock needs -pid-file FILE",
            ));
        };
        return Ok(match try_lock(&path) {
            LockState::NotRunning => 0,
            LockState::Running | LockState::Unusable => 1,
        });
    }
    let Some(dir) = opts.get("C").filter(|d| !d.is_empty()) else {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("missing -C CONFIG_DIR; {USAGE}"),
        ));
    };
    // Handlers first: a SIGHUP or SIGTERM sent while the config loads must not kill the master
    // (it becomes a pending reload or stop).
    let signals =
        signals::Signals::install().map_err(|e| Error::io("install signal handlers", e))?;
    let level = if opts.get_bool("verbose", false)? {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let stop_grace = opts.get_duration("master-stop-timeout", DEFAULT_STOP_GRACE)?;
    let log_service = opts.get("log-service").map(LogService::parse).transpose()?;
    let config_dir =
        std::path::absolute(dir).map_err(|e| Error::io(format!("config dir {dir}"), e))?;
    if !config_dir.is_dir() {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "config dir {} does not exist or is not a directory",
                config_dir.display()
            ),
        ));
    }

    let mut load = move |dir: &Path| -> Result<Vec<Service>> {
        let mut files = match hooks.load_config.as_mut() {
            Some(loader) => loader(dir)?,
            None => load_config_from_dir(dir)?,
        };
        for file in &mut files {
            file.config.merge(&overrides);
        }
        validate(&files)
    };
    // Validate everything before touching anything.
    let services = load(&config_dir)?;
    let _ = logging::init(&LogTarget::Stderr, "zmaster", level);
    let mut pid_lock = pid_file.as_deref().map(PidFile::acquire).transpose()?;
    sys::mark_inherited_fds_cloexec();
    if let Some(svc) = &log_service {
        svc.start()?;
    }
    let settings = supervisor::Settings {
        config_dir: config_dir.clone(),
        stop_grace,
        tick_interval: hooks.event_loop.is_some().then_some(EVENT_LOOP_INTERVAL),
        child_args,
    };
    let mut supervisor = match supervisor::Supervisor::new(settings, services, signals) {
        Ok(s) => s,
        Err(e) => {
            if let Some(svc) = &log_service {
                svc.remove_socket();
            }
            return Err(e);
        }
    };
    // Up (every listener bound): only now does the pid file get this pid. A start that failed
    // before leaves it holding whatever it held.
    if let Some(Err(e)) = pid_lock.as_mut().map(PidFile::write_pid) {
        if let Some(svc) = &log_service {
            svc.remove_socket();
        }
        return Err(e);
    }
    log::info!(
        "started: pid={} config={} pid_file={}",
        std::process::id(),
        config_dir.display(),
        pid_lock
            .as_ref()
            .map_or("-".into(), |p| p.path().display().to_string())
    );
    if let Some(hook) = hooks.before_service.as_mut() {
        hook();
    }
    let mut tick = move || {
        if let Some(hook) = hooks.event_loop.as_mut() {
            hook();
        }
    };
    let mut reload = || load(&config_dir);
    let supervisor::Outcome::Stopped = supervisor.run(&mut reload, &mut tick);
    if let Some(svc) = &log_service {
        svc.remove_socket();
    }
    drop(pid_lock);
    Ok(0)
}
