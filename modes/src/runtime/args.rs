//! A server's argv (SPEC §5/§6): `MASTER` or `alone`, the `-key value` convention and the settings.

use std::ffi::OsStr;
use std::time::Duration;

use log::LevelFilter;
use zmaster_core::cli::{CommandLine, program_name};
use zmaster_core::config::Config;
use zmaster_core::error::quoted;
use zmaster_core::protocol::{ALONE_MARK, MASTER_MARK};

use super::error::{Error, ErrorKind, Result};
use super::lifecycle::Limits;

/// Default `server-coroutine-stack-size`: 128 KiB, the coroutine engine's default stack.
pub use zmaster_coro::DEFAULT_STACK_SIZE as DEFAULT_COROUTINE_STACK_SIZE;

/// How the server was started: `argv[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `MASTER`: started by a master, listeners inherited as fds 5+ (SPEC §5).
    Master,
    /// `alone`: started by hand, binds its own listeners from `-server-service` addresses.
    Alone,
}

/// The per-service keys every server reads (SPEC §6), with their defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `server-thread-count`: pool workers or scheduler threads (default: CPU count).
    pub thread_count: usize,
    /// `server-coroutine-stack-size`: bytes per coroutine stack (default 128k).
    pub coroutine_stack_size: usize,
    /// `server-coroutine-stack-pool`: finished coroutines' stacks each scheduler thread
    /// keeps for reuse (default 256, 0 to 1 048 576; 0 unmaps every stack when its coroutine
    /// ends).
    pub coroutine_stack_pool: usize,
    /// `server-stop-on-softstop-after`: drain deadline on softstop (default 0 = see SPEC §6).
    pub stop_on_softstop_after: Duration,
    /// `server-log-level` (zmaster extension): `error|warn|info|debug|trace|off`, default `info`.
    pub log_level: LevelFilter,
    /// The SPEC §13 lifecycle limits (`server-max-use`, `server-max-connections`, ...).
    pub limits: Limits,
}

impl Settings {
    /// Reads the settings from a server's effective config.
    ///
    /// # Errors
    /// A value that does not parse or is out of range (the message names the key).
    pub fn from_config(config: &Config) -> Result<Settings> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let thread_count = config.get_int_in("server-thread-count", cpus as i64, 1, 4096)?;
        let stack = config.get_size(
            "server-coroutine-stack-size",
            DEFAULT_COROUTINE_STACK_SIZE as u64,
        )?;
        if !(16 * 1024..=1 << 30).contains(&stack) {
            let raw = config.get_str("server-coroutine-stack-size", "");
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}server-coroutine-stack-size = {}: expected 16k to 1g",
                    located(config, "server-coroutine-stack-size"),
                    quoted(raw)
                ),
            ));
        }
        let default_pool = zmaster_coro::Config::default().pool_stacks;
        let pool = config.get_int_in(
            "server-coroutine-stack-pool",
            i64::try_from(default_pool).unwrap_or(i64::MAX),
            0,
            1 << 20,
        )?;
        let level_text = config.get_str("server-log-level", "info");
        let log_level: LevelFilter = level_text.parse().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{}server-log-level = {}: expected error, warn, info, debug, trace or off",
                    located(config, "server-log-level"),
                    quoted(level_text)
                ),
            )
        })?;
        Ok(Settings {
            thread_count: usize::try_from(thread_count).unwrap_or(1),
            coroutine_stack_size: usize::try_from(stack).unwrap_or(usize::MAX),
            coroutine_stack_pool: usize::try_from(pool).unwrap_or(default_pool),
            stop_on_softstop_after: config
                .get_duration("server-stop-on-softstop-after", Duration::ZERO)?,
            log_level,
            limits: Limits::from_config(config)?,
        })
    }
}

/// A parsed server command line.
#[derive(Debug, Clone)]
pub(crate) struct Invocation {
    /// The program's basename: the log ident.
    pub(crate) ident: String,
    pub(crate) launch: Launch,
    pub(crate) command_line: CommandLine,
}

/// The usage text printed for a bad argv.
pub fn usage(ident: &str) -> String {
    format!(
        "usage: {ident} alone -server-service ADDR[,ADDR...] [-config FILE] [-key value ...]\n\
         \x20      {ident} MASTER ...   (started by zmaster; see SPEC §5)"
    )
}

/// Parses argv (`argv[0]` included).
///
/// # Errors
/// `ErrorKind::Usage` when `argv[1]` is neither `MASTER` nor `alone`, or an option lacks a value.
pub(crate) fn parse_args(args: Vec<String>) -> Result<Invocation> {
    let ident = program_name(args.first().map(OsStr::new), "server");
    let launch = match args.get(1).map(String::as_str) {
        Some(MASTER_MARK) => Launch::Master,
        Some(ALONE_MARK) => Launch::Alone,
        Some(other) => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "argv[1] must be {MASTER_MARK} or {ALONE_MARK}, not {}",
                    quoted(other)
                ),
            ));
        }
        None => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("missing argv[1] ({MASTER_MARK} or {ALONE_MARK})"),
            ));
        }
    };
    let command_line = CommandLine::parse(args.into_iter().skip(2))?;
    if let Some(extra) = command_line.positional.first() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("unexpected argument {}", quoted(extra)),
        ));
    }
    Ok(Invocation {
        ident,
        launch,
        command_line,
    })
}

/// `FILE:LINE: ` for a key set in a config file, `command line: ` for one set there, else "".
pub(crate) fn located(config: &Config, key: &str) -> String {
    match config.origin(key) {
        Some(zmaster_core::config::Origin::File(loc)) => format!("{loc}: "),
        Some(zmaster_core::config::Origin::CommandLine) => "command line: ".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn master_and_alone() {
        let inv = parse_args(args(&[
            "/usr/bin/echo-aio",
            "MASTER",
            "-server-service",
            ":i5",
        ]))
        .unwrap();
        assert_eq!(inv.ident, "echo-aio");
        assert_eq!(inv.launch, Launch::Master);
        let inv = parse_args(args(&["x", "alone", "-server-service", "127.0.0.1:1"])).unwrap();
        assert_eq!(inv.launch, Launch::Alone);
        assert_eq!(
            inv.command_line.overrides.get("server-service"),
            Some("127.0.0.1:1")
        );
    }

    #[test]
    fn bad_argv_is_a_usage_error() {
        for bad in [
            &["x"][..],
            &["x", "master", "-server-service", ":i5"],
            &["x", "-server-service", "a"],
            &["x", "alone", "-server-service"],
            &["x", "alone", "-server-service", "a", "extra"],
        ] {
            let err = parse_args(args(bad)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Usage, "{bad:?}: {err}");
        }
    }

    #[test]
    fn long_user_values_are_quoted_cut_in_errors() {
        let long = "v".repeat(5_000);
        let cut = "…(5000 bytes)";
        for bad in [
            args(&["x", &long]),
            args(&["x", "alone", "-server-service", "a", &long]),
        ] {
            let err = parse_args(bad).unwrap_err().to_string();
            assert!(err.len() < 300 && err.ends_with(cut), "{err}");
        }
        for key in ["server-coroutine-stack-size", "server-log-level"] {
            let mut c = Config::new();
            c.set(key, &long);
            let err = Settings::from_config(&c).unwrap_err().to_string();
            assert!(err.len() < 300 && err.contains(cut), "{err}");
        }
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = Settings::from_config(&Config::new()).unwrap();
        assert!(s.thread_count >= 1);
        assert_eq!(s.coroutine_stack_size, 128 * 1024);
        assert_eq!(s.coroutine_stack_pool, 256);
        assert_eq!(s.stop_on_softstop_after, Duration::ZERO);
        assert_eq!(s.log_level, LevelFilter::Info);
        let mut c = Config::new();
        c.set("server-thread-count", "7");
        c.set("server-coroutine-stack-size", "256k");
        c.set("server-coroutine-stack-pool", "32");
        c.set("server-stop-on-softstop-after", "2m");
        c.set("server-log-level", "debug");
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(s.coroutine_stack_pool, 32);
        c.set("server-coroutine-stack-pool", "0");
        assert_eq!(Settings::from_config(&c).unwrap().coroutine_stack_pool, 0);
        c.set("server-coroutine-stack-pool", "1048576");
        assert_eq!(
            Settings::from_config(&c).unwrap().coroutine_stack_pool,
            1 << 20
        );
        c.set("server-coroutine-stack-pool", "32");
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(
            (
                s.thread_count,
                s.coroutine_stack_size,
                s.stop_on_softstop_after
            ),
            (7, 256 * 1024, Duration::from_secs(120))
        );
        for (key, value) in [
            ("server-thread-count", "0"),
            ("server-thread-count", "x"),
            ("server-coroutine-stack-size", "1k"),
            ("server-coroutine-stack-pool", "-1"),
            ("server-coroutine-stack-pool", "1048577"),
            ("server-coroutine-stack-pool", "many"),
            ("server-stop-on-softstop-after", "soon"),
            ("server-log-level", "loud"),
        ] {
            let mut c = Config::new();
            c.set(key, value);
            let err = Settings::from_config(&c).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
    }
}
