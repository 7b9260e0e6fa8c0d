//! zmaster: the master process of the zmaster framework, as a library and the `zmaster` binary.
//!
//! The master reads one config file per service (`config_dir/*.cf`), binds every listener
//! itself, forks `server-proc-count` server processes per service that inherit them (LIB-ZC's
//! fd layout: see [`zmaster_core::protocol`]), restarts children that exit (with crash-loop
//! backoff), reloads on SIGHUP without dropping a connection, replaces itself by a new binary
//! on SIGUSR2 without refusing one (SPEC §14), and stops on SIGTERM/SIGINT.
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
mod human;
mod keys;
mod listeners;
mod logsvc;
mod master_log;
mod notify;
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

pub use error::{Error, ErrorKind, Result};
pub use logsvc::{LogService, Rotation};
pub use pidfile::{LockState, PidFile, try_lock};
pub use services::process::Process;
pub use services::{DEFAULT_BACKLOG, Service, load_config_from_dir, validate};
pub use supervisor::Backoff;

pub(crate) use human::human_duration;

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

const USAGE: &str = "usage: zmaster -C CONFIG_DIR [-t|--check] [-pid-file FILE] [--try-lock] [-log-service SOCK,DIR[,day|hour]] [-master-log stderr|syslog,FACILITY|masterlog] [-master-stop-timeout DURATION] [-master-upgrade-timeout DURATION] [-control SOCK] [--verbose] [-key value ...]";

const HELP: &str = "\
\x20 -C DIR                   the config dir: one service per DIR/*.cf, globals in DIR/*.gcf
  -t, --check              validate the config dir, bind and start nothing, and exit
  -pid-file FILE           lock FILE and write the master's pid to it
  -control SOCK            the control socket for zmasterctl (default: the pid file + .ctl;
                           '' for none)
  --try-lock               with -pid-file: exit 0 if no master runs, 1 if one does
  -log-service SOCK,DIR[,day|hour]
                           collect the servers' masterlog records into DIR
  -master-log TARGET       the master's lines also to syslog,FACILITY or masterlog
  -master-stop-timeout D   grace between SIGTERM and SIGKILL at stop (default 10s)
  -master-upgrade-timeout D
                           how long the new master of a binary upgrade (SIGUSR2) has to
                           be ready before it is killed and the upgrade rolled back
                           (default 30s)
  --verbose                debug lines
  -key value               override key in every service (passed to the servers too)
  -h, --help               this help
  -V, --version            the version";

/// Value-less flags the master takes besides LIB-ZC's `--flag`s.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flags {
    check: bool,
    help: bool,
    version: bool,
}

/// Takes `-t`/`--check`, `-h`/`--help`, `-V`/`--version` out of `args`: LIB-ZC's convention
/// (core's parser, which the servers keep) would read `-t` as a key needing a value. An
/// argument in a value position (after `-key`) is left alone, so `-pid-file -t` is a file.
fn split_flags(args: Vec<String>) -> (Vec<String>, Flags) {
    let mut flags = Flags::default();
    let mut rest = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    let mut value_next = false;
    while let Some(arg) = args.next() {
        if value_next {
            value_next = false;
            rest.push(arg);
            continue;
        }
        match arg.as_str() {
            "--" => {
                rest.push(arg);
                rest.extend(args.by_ref());
                break;
            }
            "-t" | "--check" => flags.check = true,
            "-h" | "--help" => flags.help = true,
            "-V" | "--version" => flags.version = true,
            a => {
                value_next = a.len() > 1 && a.starts_with('-') && !a.starts_with("--");
                rest.push(arg);
            }
        }
    }
    (rest, flags)
}

/// A master option `keys::MASTER_OPTIONS` does not list (yet): taken out of the overrides
/// here, so it neither reaches the children nor counts as an unknown `-key`.
const UPGRADE_TIMEOUT: &str = "master-upgrade-timeout";

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

/// The control socket's path (SPEC §11): `-control PATH`, else the pid file's path + `.ctl`,
/// else none. `-control ''` serves none.
fn control_path(option: Option<&str>, pid_file: Option<&Path>) -> Option<PathBuf> {
    match option {
        Some(path) => Some(PathBuf::from(path)).filter(|p| !p.as_os_str().is_empty()),
        None => pid_file.map(|p| {
            let mut path = p.as_os_str().to_owned();
            path.push(".ctl");
            PathBuf::from(path)
        }),
    }
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

/// Loads the service files (the hook's or the dir's) and validates them with the command-line
/// `overrides` merged in; returns the services and the unknown-key warnings.
fn load_services(
    loader: Option<&mut LoadConfig>,
    dir: &Path,
    overrides: &Config,
    first: bool,
) -> Result<(Vec<Service>, Vec<String>)> {
    let mut files = match loader {
        Some(loader) => loader(dir)?,
        None => load_config_from_dir(dir)?,
    };
    // Only at start: a reload that drops the key an override names keeps the running master.
    if first {
        keys::check_overrides(overrides, &files)?;
    }
    let warnings = keys::unknown_key_warnings(&files);
    for file in &mut files {
        file.config.merge(overrides);
        keys::check_values(&file.config)?;
    }
    Ok((validate(&files)?, warnings))
}

fn run<I, S>(args: I, mut hooks: Hooks) -> Result<i32>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let (args, flags) = split_flags(args.into_iter().map(Into::into).collect());
    if flags.help {
        println!("{USAGE}\n{HELP}");
        return Ok(0);
    }
    if flags.version {
        println!("zmaster {}", env!("CARGO_PKG_VERSION"));
        return Ok(0);
    }
    let cli = CommandLine::parse(args)?;
    let opts = &cli.overrides;
    if let Some(extra) = cli.positional.first() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("unexpected argument {extra:?}; {USAGE}"),
        ));
    }
    // Any other `-key value` overrides that key in every service (SPEC §4's `[-key value ...]`).
    let mut overrides = opts.clone();
    for key in keys::MASTER_OPTIONS {
        overrides.remove(key);
    }
    overrides.remove(UPGRADE_TIMEOUT);
    let child_args = child_args(&overrides);
    let pid_file = opts
        .get("pid-file")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let control = control_path(opts.get("control"), pid_file.as_deref());
    if opts.get_bool("try-lock", false)? && !flags.check {
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
    let level = if opts.get_bool("verbose", false)? {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let stop_grace = opts.get_duration("master-stop-timeout", DEFAULT_STOP_GRACE)?;
    let upgrade_timeout =
        opts.get_duration(UPGRADE_TIMEOUT, supervisor::DEFAULT_UPGRADE_TIMEOUT)?;
    // Now, before anything could change the working dir: the path a SIGUSR2 starts.
    let launch = supervisor::Launch::from_start(upgrade_timeout);
    let log_service = opts.get("log-service").map(LogService::parse).transpose()?;
    let master_log = opts
        .get("master-log")
        .map_or(Ok(master_log::Target::Stderr), master_log::Target::parse)?;
    if master_log == master_log::Target::MasterLog && log_service.is_none() {
        return Err(Error::new(
            ErrorKind::Usage,
            "-master-log masterlog needs -log-service SOCK,DIR",
        ));
    }
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
    if flags.check {
        // SPEC §11: everything the start validates, then nothing bound, nothing started.
        let (services, warnings) =
            load_services(hooks.load_config.as_mut(), &config_dir, &overrides, true)?;
        for w in warnings {
            eprintln!("zmaster: warning: {w}");
        }
        let listeners: usize = services.iter().map(|s| s.addrs.len()).sum();
        println!(
            "config ok: {} services, {listeners} listeners",
            services.len()
        );
        return Ok(0);
    }
    // Handlers first: a SIGHUP or SIGTERM sent while the config loads must not kill the master
    // (it becomes a pending reload or stop).
    let signals =
        signals::Signals::install().map_err(|e| Error::io("install signal handlers", e))?;

    // Validate everything before touching anything.
    let (services, warnings) =
        load_services(hooks.load_config.as_mut(), &config_dir, &overrides, true)?;
    master_log::init(
        &master_log,
        level,
        log_service.as_ref().map(|svc| svc.socket.as_path()),
    )?;
    for w in warnings {
        log::warn!("{w}");
    }
    // Before this master opens files of its own: the fds systemd or an old master passed.
    let mut inherited = supervisor::take_inherited();
    let mut handed = inherited.upgrade.take();
    if handed.is_some() {
        // fork cleared it already; this master must outlive the one that started it.
        if let Err(e) = nix::sys::prctl::set_pdeathsig(None) {
            log::warn!("upgrade: clear the parent-death signal: {e}");
        }
    }
    let handed_lock = handed.as_mut().and_then(|h| h.pidlock.take());
    let mut pid_lock = match (pid_file.as_deref(), handed_lock) {
        (Some(path), Some(fd)) => Some(PidFile::inherit(path, fd)?),
        (path, _) => path.map(PidFile::acquire).transpose()?,
    };
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
    let passed = std::mem::take(&mut inherited.listeners);
    let mut supervisor = match supervisor::Supervisor::new(settings, services, signals, passed) {
        Ok(s) => s,
        Err(e) => {
            if let Some(svc) = &log_service {
                svc.remove_socket();
            }
            return Err(e);
        }
    };
    let handed_control = handed.as_mut().and_then(|h| h.control.take());
    if let Some(path) = &control
        && let Err(e) = match handed_control {
            Some(fd) => supervisor.adopt_control_at(path, fd),
            None => supervisor.serve_control_at(path),
        }
    {
        if let Some(svc) = &log_service {
            svc.remove_socket();
        }
        return Err(e);
    }
    if let Some(svc) = &log_service {
        let svc = svc.clone();
        supervisor.on_reopen(Box::new(move || svc.reopen()));
    }
    // Up (every listener bound): only now does the pid file get this pid. A start that failed
    // before leaves it holding whatever it held. A master an upgrade started writes it once
    // its first generation runs, just before it reports ready (a rollback before that leaves
    // the old master's pid).
    if handed.is_none()
        && let Some(Err(e)) = pid_lock.as_mut().map(PidFile::write_pid)
    {
        if let Some(svc) = &log_service {
            svc.remove_socket();
        }
        return Err(e);
    }
    log::info!(
        "started: pid={} config={} pid_file={} stop_timeout={}",
        std::process::id(),
        config_dir.display(),
        pid_lock
            .as_ref()
            .map_or("-".into(), |p| p.path().display().to_string()),
        human_duration(stop_grace)
    );
    if handed.is_some() {
        log::info!(
            "upgrade: started by pid {}; ready once the first generation runs",
            std::os::unix::process::parent_id()
        );
    }
    let ready = handed.map(|h| supervisor::ReadyPipe::new(h.ready));
    supervisor.prepare_upgrades(supervisor::UpgradeState::new(launch, pid_lock, ready));
    if let Some(hook) = hooks.before_service.as_mut() {
        hook();
    }
    let mut tick = move || {
        if let Some(hook) = hooks.event_loop.as_mut() {
            hook();
        }
    };
    let mut loader = hooks.load_config;
    let mut reload = || {
        let (services, warnings) = load_services(loader.as_mut(), &config_dir, &overrides, false)?;
        for w in warnings {
            log::warn!("{w}");
        }
        Ok(services)
    };
    let supervisor::Outcome::Stopped = supervisor.run(&mut reload, &mut tick);
    if let Some(svc) = &log_service {
        svc.remove_socket();
    }
    Ok(0)
}
