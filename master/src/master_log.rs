//! `-master-log stderr|syslog,FACILITY|masterlog`: the master's own lines, on stderr as always
//! and, with syslog or masterlog, there too.
//!
//! zmaster_core's logger has one sink per process; the master needs two (stderr, which
//! supervisors and `zmasterctl -log-file` read, plus the operator's choice), so it formats
//! each record once per sink here. Each line is still one `write(2)` on stderr and one
//! datagram to syslog or the collector, so lines never interleave.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};
use zmaster_core::logging::utc_timestamp;

use crate::error::{Error, ErrorKind, Result};

/// The syslog socket (glibc's `_PATH_LOG`).
const SYSLOG_PATH: &str = "/dev/log";

/// Syslog facility names and their codes (RFC 3164 §4.1.1: code × 8).
const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// Where the master's lines go besides stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Only stderr (the default).
    Stderr,
    /// Also the local syslog daemon, with this facility code.
    Syslog(u8),
    /// Also the `-log-service` collector.
    MasterLog,
}

impl Target {
    /// Parses a `-master-log` value.
    pub(crate) fn parse(value: &str) -> Result<Target> {
        let bad =
            |why: &str| Error::new(ErrorKind::Usage, format!("-master-log \"{value}\": {why}"));
        match value.split_once(',') {
            None if value == "stderr" => Ok(Target::Stderr),
            None if value == "masterlog" => Ok(Target::MasterLog),
            None if value == "syslog" => Ok(Target::Syslog(1)),
            Some(("syslog", facility)) => FACILITIES
                .iter()
                .find(|(name, _)| *name == facility)
                .map(|(_, code)| Target::Syslog(*code))
                .ok_or_else(|| bad(&format!("unknown syslog facility \"{facility}\""))),
            _ => Err(bad("expected stderr, syslog,FACILITY or masterlog")),
        }
    }
}

enum Extra {
    None,
    Syslog {
        code: u8,
        socket: Mutex<Option<UnixDatagram>>,
    },
    MasterLog {
        socket: UnixDatagram,
        path: PathBuf,
    },
}

struct MasterLogger {
    level: LevelFilter,
    pid: u32,
    extra: Extra,
}

/// Installs the master's logger. `collector` is the `-log-service` socket, needed for
/// `masterlog`. Returns a warning to log when syslog cannot be reached (stderr still works).
pub(crate) fn init(target: &Target, level: LevelFilter, collector: Option<&Path>) -> Result<()> {
    let mut warning = None;
    let extra = match target {
        Target::Stderr => Extra::None,
        Target::Syslog(code) => {
            let socket = UnixDatagram::unbound().and_then(|s| s.connect(SYSLOG_PATH).map(|()| s));
            if let Err(e) = &socket {
                warning = Some(format!(
                    "-master-log syslog: {SYSLOG_PATH}: {e}; master lines go to stderr only until it answers"
                ));
            }
            Extra::Syslog {
                code: *code,
                socket: Mutex::new(socket.ok()),
            }
        }
        Target::MasterLog => {
            let Some(path) = collector else {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "-master-log masterlog needs -log-service SOCK,DIR",
                ));
            };
            let socket = UnixDatagram::unbound()
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|e| Error::io("create the master-log socket", e))?;
            Extra::MasterLog {
                socket,
                path: path.to_path_buf(),
            }
        }
    };
    let logger = MasterLogger {
        level,
        pid: std::process::id(),
        extra,
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
        if let Some(w) = warning {
            log::warn!("{w}");
        }
    }
    Ok(())
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Writes `buf` in as few `write(2)`s as the kernel allows (one for a line under PIPE_BUF);
/// errors drop the rest: a broken stderr must not stop the master.
fn write_all_once(mut rest: &[u8]) {
    let stderr = io::stderr().lock();
    while !rest.is_empty() {
        match nix::unistd::write(stderr.as_fd(), rest) {
            Ok(0) => return,
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// RFC 3164's `Mmm dd hh:mm:ss` from the ISO timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn syslog_time(iso: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    let day = iso
        .get(8..10)
        .and_then(|d| d.parse::<u8>().ok())
        .unwrap_or(1);
    let time = iso.get(11..19).unwrap_or("00:00:00");
    format!("{month} {day:>2} {time}")
}

impl Log for MasterLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let stamp = utc_timestamp(SystemTime::now());
        let (pid, word) = (self.pid, level_word(record.level()));
        let line = format!("{stamp} zmaster[{pid}]: {word}: {}\n", record.args());
        write_all_once(line.as_bytes());
        match &self.extra {
            Extra::None => {}
            Extra::Syslog { code, socket } => {
                let severity = match record.level() {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    Level::Debug | Level::Trace => 7,
                };
                let text = format!(
                    "<{}>{} zmaster[{pid}]: {}",
                    code * 8 + severity,
                    syslog_time(&stamp),
                    record.args()
                );
                let mut socket = socket.lock().unwrap_or_else(PoisonError::into_inner);
                // The daemon restarted or came up late: reconnect once, else drop the record.
                if socket
                    .as_ref()
                    .is_none_or(|s| s.send(text.as_bytes()).is_err())
                {
                    *socket = UnixDatagram::unbound()
                        .and_then(|s| s.connect(SYSLOG_PATH).map(|()| s))
                        .ok();
                    if let Some(s) = socket.as_ref() {
                        let _ = s.send(text.as_bytes());
                    }
                }
            }
            Extra::MasterLog { socket, path } => {
                // LIB-ZC's record: IDENT,PID,message. A full collector drops it, never blocks.
                let text = format!("zmaster,{pid},{}", record.args());
                let _ = socket.send_to(text.as_bytes(), path);
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("stderr").unwrap(), Target::Stderr);
        assert_eq!(Target::parse("masterlog").unwrap(), Target::MasterLog);
        assert_eq!(Target::parse("syslog").unwrap(), Target::Syslog(1));
        assert_eq!(Target::parse("syslog,mail").unwrap(), Target::Syslog(2));
        assert_eq!(Target::parse("syslog,kern").unwrap(), Target::Syslog(0));
        assert_eq!(Target::parse("syslog,local7").unwrap(), Target::Syslog(23));
        for bad in [
            "",
            "file",
            "syslog,nosuch",
            "masterlog,x",
            "stderr,x",
            "Syslog,mail",
        ] {
            let err = Target::parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("-master-log \"{bad}\": ")),
                "{err}"
            );
        }
    }

    #[test]
    fn syslog_times() {
        assert_eq!(syslog_time("2026-11-05T18:01:40.123Z"), "Nov  5 18:01:40");
        assert_eq!(syslog_time("2026-01-25T00:00:09.000Z"), "Jan 25 00:00:09");
        assert_eq!(syslog_time("2026-12-31T23:59:59.999Z"), "Dec 31 23:59:59");
    }

    #[test]
    fn level_words() {
        let words = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .map(level_word);
        assert_eq!(words, ["error", "warning", "info", "debug", "trace"]);
    }
}
