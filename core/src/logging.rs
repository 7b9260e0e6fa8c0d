//! Logging setup from a `server-log` value: `stderr`, `stdout`, `syslog,FACILITY[,IDENT]`,
//! `masterlog,SOCKPATH` (one unix datagram per record, `IDENT,PID,message`, LIB-ZC's format).

mod sink;
mod time;

pub use time::utc_timestamp;

use std::path::{Path, PathBuf};

use log::{LevelFilter, Log};

use crate::error::{Error, ErrorKind, Result, quoted};
use sink::{Logger, MasterLogSink, SYSLOG_PATHS, Sink, SyslogSink};

/// Where log records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error (the default).
    Stderr,
    /// Standard output.
    Stdout,
    /// The local syslog daemon.
    Syslog {
        /// Facility name such as `mail` or `local0`.
        facility: String,
        /// Program name in each record (default: the program's ident).
        ident: Option<String>,
    },
    /// A LIB-ZC master-log collector listening on a unix datagram socket.
    MasterLog {
        /// The collector's socket path.
        path: PathBuf,
    },
}

impl LogTarget {
    /// Parses a `server-log` value (empty = stderr).
    ///
    /// # Errors
    /// An unknown target, a syslog facility that does not exist, or a `masterlog` without a path.
    pub fn parse(value: &str) -> Result<LogTarget> {
        let mut parts = value.split(',').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Value,
                format!("server-log = {}: {why}", quoted(value)),
            )
        };
        match head {
            "" | "stderr" if rest.is_empty() => Ok(LogTarget::Stderr),
            "stdout" if rest.is_empty() => Ok(LogTarget::Stdout),
            "syslog" => {
                let facility = rest
                    .first()
                    .copied()
                    .filter(|f| !f.is_empty())
                    .unwrap_or("user");
                if facility.parse::<syslog::Facility>().is_err() {
                    return Err(bad(&format!(
                        "unknown syslog facility {}",
                        quoted(facility)
                    )));
                }
                if rest.len() > 2 {
                    return Err(bad("expected syslog,FACILITY[,IDENT]"));
                }
                let ident = rest
                    .get(1)
                    .filter(|i| !i.is_empty())
                    .map(|i| (*i).to_owned());
                Ok(LogTarget::Syslog {
                    facility: facility.to_owned(),
                    ident,
                })
            }
            "masterlog" => match rest.as_slice() {
                [path] if !path.is_empty() => Ok(LogTarget::MasterLog {
                    path: PathBuf::from(path),
                }),
                _ => Err(bad("expected masterlog,SOCKPATH")),
            },
            _ => Err(bad(
                "expected stderr, stdout, syslog,FACILITY[,IDENT] or masterlog,SOCKPATH",
            )),
        }
    }
}

/// Installs the global logger for `target`. `ident` names the program in each record.
/// Call once per process; later calls are ignored (the first logger stays).
///
/// Each record is formatted into one buffer and written with one `write(2)` (one datagram for
/// syslog and master-log), so the lines of processes sharing a pipe never interleave.
/// A syslog daemon that cannot be reached falls back to stderr with a warning; a master-log
/// collector that is missing or slow drops records rather than block or fail the program.
///
/// # Errors
/// Only for a target that cannot be set up at all (none today: every failure falls back).
pub fn init(target: &LogTarget, ident: &str, level: LevelFilter) -> Result<()> {
    let pid = std::process::id();
    let (sink, fallback_warning) = sink_for(target, ident, pid, &SYSLOG_PATHS.map(Path::new));
    let logger = Logger {
        level,
        ident: ident.to_owned(),
        pid,
        sink,
    };
    // fern dispatches (level filter, one place to add per-module levels); the sink formats the
    // whole line into one buffer and writes it once, so fern's own piecewise writers are unused.
    let dispatch = fern::Dispatch::new()
        .level(level)
        .chain(fern::Output::call(move |record| logger.log(record)));
    if dispatch.apply().is_ok()
        && let Some(warning) = fallback_warning
    {
        log::warn!("{warning}");
    }
    Ok(())
}

/// The sink for `target` (syslog tried at `syslog_paths`), and the warning to log when
/// syslog could not be reached and stderr stands in.
fn sink_for(
    target: &LogTarget,
    ident: &str,
    pid: u32,
    syslog_paths: &[&Path],
) -> (Sink, Option<String>) {
    let mut fallback_warning = None;
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::Stdout => Sink::Stdout,
        LogTarget::Syslog {
            facility,
            ident: custom,
        } => {
            let facility = facility.parse().unwrap_or(syslog::Facility::LOG_USER);
            let process = custom.clone().unwrap_or_else(|| ident.to_owned());
            match SyslogSink::connect(syslog_paths, facility, process, pid) {
                Ok(sink) => Sink::Syslog(sink),
                Err(e) => {
                    fallback_warning = Some(format!("syslog unavailable ({e}); logging to stderr"));
                    Sink::Stderr
                }
            }
        }
        LogTarget::MasterLog { path } => {
            Sink::MasterLog(MasterLogSink::new(path.clone(), ident.to_owned(), pid))
        }
    };
    (sink, fallback_warning)
}

fn level_word(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn targets() {
        assert_eq!(LogTarget::parse("").unwrap(), LogTarget::Stderr);
        assert_eq!(LogTarget::parse("stderr").unwrap(), LogTarget::Stderr);
        assert_eq!(LogTarget::parse("stdout").unwrap(), LogTarget::Stdout);
        assert_eq!(
            LogTarget::parse("syslog,mail,smtpd").unwrap(),
            LogTarget::Syslog {
                facility: "mail".into(),
                ident: Some("smtpd".into())
            }
        );
        assert_eq!(
            LogTarget::parse("syslog").unwrap(),
            LogTarget::Syslog {
                facility: "user".into(),
                ident: None
            }
        );
        assert_eq!(
            LogTarget::parse("masterlog,/run/zm.sock").unwrap(),
            LogTarget::MasterLog {
                path: "/run/zm.sock".into()
            }
        );
        for bad in [
            "file",
            "syslog,nosuch",
            "masterlog",
            "masterlog,",
            "stderr,x",
            "stdout,x",
            ",x",
            "Stderr",
            "syslog,mail,a,b",
        ] {
            let err = LogTarget::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("server-log = "), "{bad}: {err}");
        }
    }

    #[test]
    fn level_words() {
        let words = [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Info,
            log::Level::Debug,
            log::Level::Trace,
        ]
        .map(level_word);
        assert_eq!(words, ["error", "warning", "info", "debug", "trace"]);
    }

    fn log_at(logger: &Logger, level: log::Level, message: &str) {
        log::Log::log(
            logger,
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(level)
                .build(),
        );
    }

    fn logger(sink: Sink) -> Logger {
        Logger {
            level: LevelFilter::Info,
            ident: "prog".into(),
            pid: 42,
            sink,
        }
    }

    #[test]
    fn each_target_gets_its_sink_and_records_reach_it() {
        let dir = tempfile::tempdir().unwrap();
        let daemon_path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&daemon_path).unwrap();
        daemon.set_nonblocking(true).unwrap();
        let paths = [daemon_path.as_path()];
        let (stderr, warning) = sink_for(&LogTarget::Stderr, "prog", 42, &paths);
        assert!(matches!(stderr, Sink::Stderr) && warning.is_none());
        let (stdout, warning) = sink_for(&LogTarget::Stdout, "prog", 42, &paths);
        assert!(matches!(stdout, Sink::Stdout) && warning.is_none());
        let syslog = |facility: &str, ident: Option<&str>| LogTarget::Syslog {
            facility: facility.into(),
            ident: ident.map(Into::into),
        };
        let mut buf = [0u8; 256];
        for (target, pri, process) in [
            (syslog("mail", None), "<22>", "prog"),
            (syslog("local0", Some("custom")), "<134>", "custom"),
            (syslog("no-such", None), "<14>", "prog"),
        ] {
            let (sink, warning) = sink_for(&target, "prog", 42, &paths);
            assert!(matches!(sink, Sink::Syslog(_)) && warning.is_none());
            let logger = logger(sink);
            log_at(&logger, log::Level::Debug, "below the level");
            log_at(&logger, log::Level::Info, "hi");
            let n = daemon.recv(&mut buf).unwrap();
            let got = &buf[..n];
            let got = std::str::from_utf8(got).unwrap();
            assert!(got.starts_with(pri), "{got}");
            assert!(got.ends_with(&format!(" {process}[42]: hi")), "{got}");
            assert!(
                daemon.recv(&mut buf).is_err(),
                "the debug record was filtered"
            );
        }
        let missing = dir.path().join("missing");
        let (sink, warning) = sink_for(&syslog("mail", None), "prog", 42, &[missing.as_path()]);
        assert!(matches!(sink, Sink::Stderr));
        let warning = warning.unwrap();
        assert!(warning.starts_with("syslog unavailable ("), "{warning}");
        assert!(warning.ends_with("); logging to stderr"), "{warning}");

        let collector_path = dir.path().join("masterlog");
        let collector = UnixDatagram::bind(&collector_path).unwrap();
        collector.set_nonblocking(true).unwrap();
        let target = LogTarget::MasterLog {
            path: collector_path,
        };
        let (sink, warning) = sink_for(&target, "prog", 42, &paths);
        assert!(matches!(sink, Sink::MasterLog(_)) && warning.is_none());
        let logger = logger(sink);
        log_at(&logger, log::Level::Debug, "below the level");
        log_at(&logger, log::Level::Warn, "hello");
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"prog,42,hello");
        assert!(
            collector.recv(&mut buf).is_err(),
            "the debug record was filtered"
        );
    }
}
