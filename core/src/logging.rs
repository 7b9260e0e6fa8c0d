//! Logging setup from a `server-log` value: `stderr`, `stdout`, `syslog,FACILITY[,IDENT]`,
//! `masterlog,SOCKPATH` (one unix datagram per record, `IDENT,PID,message`, LIB-ZC's format).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use log::LevelFilter;

use crate::error::{Error, ErrorKind, Result};

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
        let bad =
            |why: &str| Error::new(ErrorKind::Value, format!("server-log = {value:?}: {why}"));
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
                    return Err(bad(&format!("unknown syslog facility {facility:?}")));
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
/// A syslog daemon that cannot be reached falls back to stderr with a warning; a master-log
/// collector that is missing or slow drops records rather than block or fail the program.
///
/// # Errors
/// Only for a target that cannot be set up at all (none today: every failure falls back).
pub fn init(target: &LogTarget, ident: &str, level: LevelFilter) -> Result<()> {
    let pid = std::process::id();
    let base = fern::Dispatch::new().level(level);
    let stream_format = {
        let ident = ident.to_owned();
        move |out: fern::FormatCallback<'_>,
              message: &std::fmt::Arguments<'_>,
              record: &log::Record<'_>| {
            out.finish(format_args!(
                "{} {}[{}]: {}: {}",
                utc_timestamp(SystemTime::now()),
                ident,
                pid,
                level_word(record.level()),
                message
            ))
        }
    };
    let mut fallback_warning = None;
    let dispatch = match target {
        LogTarget::Stderr => base.format(stream_format).chain(io::stderr()),
        LogTarget::Stdout => base.format(stream_format).chain(io::stdout()),
        LogTarget::Syslog {
            facility,
            ident: custom,
        } => {
            let formatter = syslog::Formatter3164 {
                facility: facility.parse().unwrap_or(syslog::Facility::LOG_USER),
                hostname: None,
                process: custom.clone().unwrap_or_else(|| ident.to_owned()),
                pid,
            };
            match syslog::unix(formatter) {
                Ok(logger) => base.chain(logger),
                Err(e) => {
                    fallback_warning = Some(format!("syslog unavailable ({e}); logging to stderr"));
                    base.format(stream_format).chain(io::stderr())
                }
            }
        }
        LogTarget::MasterLog { path } => {
            let sink = MasterLogSink::new(path.clone(), ident.to_owned(), pid);
            base.chain(fern::Output::call(move |record| sink.send(record)))
        }
    };
    if dispatch.apply().is_ok()
        && let Some(warning) = fallback_warning
    {
        log::warn!("{warning}");
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

/// Client side of LIB-ZC's master-log: one non-blocking datagram per record.
struct MasterLogSink {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    ident: String,
    pid: u32,
}

impl MasterLogSink {
    fn new(path: PathBuf, ident: String, pid: u32) -> MasterLogSink {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        MasterLogSink {
            socket,
            path,
            ident,
            pid,
        }
    }

    fn send(&self, record: &log::Record<'_>) {
        let Some(socket) = &self.socket else { return };
        let line = format!("{},{},{}", self.ident, self.pid, record.args());
        // A missing or full collector must never block or fail the program: drop the record.
        let _ = socket.send_to(line.as_bytes(), &self.path);
    }
}

/// `2026-11-25T18:01:40.123Z` for a time (UTC, milliseconds).
pub fn utc_timestamp(time: SystemTime) -> String {
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
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
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

    #[test]
    fn masterlog_sends_lib_zc_records_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let collector = UnixDatagram::bind(&path).unwrap();
        let sink = MasterLogSink::new(path.clone(), "smtpd".into(), 42);
        let record = |msg| {
            sink.send(
                &log::Record::builder()
                    .args(format_args!("{msg}"))
                    .level(log::Level::Info)
                    .build(),
            );
        };
        record("hello");
        let mut buf = [0u8; 256];
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"smtpd,42,hello");
        // Nobody reads: the socket buffer fills, and sending still returns at once.
        for _ in 0..10_000 {
            record("flood");
        }
        drop(collector);
        record("collector gone");
    }
}
