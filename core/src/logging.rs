//! Logging setup from a `server-log` value: `stderr`, `stdout`, `syslog,FACILITY[,IDENT]`,
//! `masterlog,SOCKPATH` (one unix datagram per record, `IDENT,PID,message`, LIB-ZC's format).

mod sink;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use log::LevelFilter;

use crate::error::{Error, ErrorKind, Result, quoted};
use sink::{Logger, MasterLogSink, Sink, SyslogSink};

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
            match SyslogSink::system(facility, process, pid) {
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
    let logger = Logger {
        level,
        ident: ident.to_owned(),
        pid,
        sink,
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
        if let Some(warning) = fallback_warning {
            log::warn!("{warning}");
        }
    }
    Ok(())
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

/// A UTC calendar time, to the millisecond.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn civil_utc(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3_600,
        minute: rem % 3_600 / 60,
        second: rem % 60,
        millis: since.subsec_millis(),
    }
}

/// `2026-11-25T18:01:40.123Z` for a time (UTC, milliseconds).
pub fn utc_timestamp(time: SystemTime) -> String {
    let t = civil_utc(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            "syslog,mail,a,b",
        ] {
            let err = LogTarget::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("server-log = "), "{bad}: {err}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_629_700_123);
        assert_eq!(utc_timestamp(t), "2026-11-25T18:01:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
