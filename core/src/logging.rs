//! Logging setup from a `server-log` value: `stderr`, `stdout`, `syslog,FACILITY[,IDENT]`,
//! `masterlog,SOCKPATH` (one unix datagram per record, `IDENT,PID,message`, LIB-ZC's format).

mod sink;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use log::LevelFilter;

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
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
        if let Some(warning) = fallback_warning {
            log::warn!("{warning}");
        }
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
    use std::os::unix::net::UnixDatagram;
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

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_629_700_123);
        assert_eq!(utc_timestamp(t), "2026-11-25T18:01:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
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

    /// Days since 1970-01-01 to (year, month, day), one day at a time.
    fn naive_civil(mut days: u64) -> (i64, i64, i64) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut year = 1970;
        loop {
            let length = if leap(year) { 366 } else { 365 };
            if days < length {
                break;
            }
            days -= length;
            year += 1;
        }
        let mut month = 1;
        for length in [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ] {
            if days < length {
                break;
            }
            days -= length;
            month += 1;
        }
        (year, month, days as i64 + 1)
    }

    proptest::proptest! {
        #[test]
        fn calendar_matches_counting_days(days in 0u64..160_000, secs in 0u64..86_400, ms in 0u64..1_000) {
            let t = UNIX_EPOCH + Duration::from_millis((days * 86_400 + secs) * 1_000 + ms);
            let c = civil_utc(t);
            proptest::prop_assert_eq!((c.year, c.month, c.day), naive_civil(days));
            proptest::prop_assert_eq!(
                (c.hour, c.minute, c.second, u64::from(c.millis)),
                (secs / 3_600, secs / 60 % 60, secs % 60, ms)
            );
        }
    }

    #[test]
    fn calendar_edges() {
        for days in [
            0, 58, 59, 365, 10_956, 11_016, 11_017, 47_541, 47_540, 146_096, 146_097,
        ] {
            let c = civil_utc(UNIX_EPOCH + Duration::from_secs(days * 86_400));
            assert_eq!((c.year, c.month, c.day), naive_civil(days), "day {days}");
        }
    }
}
