//! The logger `logging::init` installs: each record is formatted into one buffer and handed to
//! its target in one call (one `write(2)` or one datagram), so the lines of processes sharing
//! a stderr pipe or a collector never interleave.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

use super::time::{civil_utc, utc_timestamp};

/// Where the installed logger sends its records.
pub(super) enum Sink {
    Stderr,
    Stdout,
    Syslog(SyslogSink),
    MasterLog(MasterLogSink),
}

/// The process's logger: a level, the program's ident and pid, and one sink.
pub(super) struct Logger {
    pub(super) level: LevelFilter,
    pub(super) ident: String,
    pub(super) pid: u32,
    pub(super) sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Stderr => {
                let line = stream_line(SystemTime::now(), &self.ident, self.pid, record);
                // The lock keeps this process's own `eprint!`s out of the middle of the line.
                let stderr = io::stderr().lock();
                write_once(stderr.as_fd(), line.as_bytes());
            }
            Sink::Stdout => {
                let line = stream_line(SystemTime::now(), &self.ident, self.pid, record);
                let mut stdout = io::stdout().lock();
                // Whatever `print!` left in std's buffer goes first, then the record, unbuffered.
                let _ = stdout.flush();
                write_once(stdout.as_fd(), line.as_bytes());
            }
            Sink::Syslog(sink) => sink.send(SystemTime::now(), record),
            Sink::MasterLog(sink) => sink.send(record),
        }
    }

    fn flush(&self) {}
}

/// `TIMESTAMP IDENT[PID]: LEVEL: MESSAGE\n`, the stderr/stdout form of a record.
pub(super) fn stream_line(now: SystemTime, ident: &str, pid: u32, record: &Record<'_>) -> String {
    let mut line = String::with_capacity(96);
    let _ = writeln!(
        line,
        "{} {ident}[{pid}]: {}: {}",
        utc_timestamp(now),
        level_word(record.level()),
        record.args()
    );
    line
}

/// Writes `buf` with as few `write(2)` calls as the kernel allows: one, unless it takes only
/// part (a pipe writes up to `PIPE_BUF` = 4096 bytes atomically). Errors drop the rest: a
/// broken or full stderr must never fail or panic the program.
fn write_once(fd: BorrowedFd<'_>, mut rest: &[u8]) {
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(0) => return,
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// The syslog sockets tried in order, as glibc and the `syslog` crate do.
pub(super) const SYSLOG_PATHS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

enum SyslogConn {
    Datagram(UnixDatagram),
    /// A stream socket: each record ends with a NUL, as glibc frames it.
    Stream(UnixStream),
}

impl SyslogConn {
    fn connect(path: &Path) -> io::Result<SyslogConn> {
        let socket = UnixDatagram::unbound()?;
        match socket.connect(path) {
            Ok(()) => Ok(SyslogConn::Datagram(socket)),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
                UnixStream::connect(path).map(SyslogConn::Stream)
            }
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, record: &[u8]) -> io::Result<()> {
        match self {
            SyslogConn::Datagram(socket) => socket.send(record).map(drop),
            SyslogConn::Stream(stream) => {
                let mut framed = Vec::with_capacity(record.len() + 1);
                framed.extend_from_slice(record);
                framed.push(0);
                stream.write_all(&framed)
            }
        }
    }
}

/// RFC 3164 records to the local syslog daemon, one datagram (or NUL-framed write) each.
pub(super) struct SyslogSink {
    facility: u8,
    process: String,
    pid: u32,
    path: PathBuf,
    conn: Mutex<Option<SyslogConn>>,
}

impl SyslogSink {
    /// Connects to the first syslog socket of `paths` that accepts.
    pub(super) fn connect(
        paths: &[&Path],
        facility: syslog::Facility,
        process: String,
        pid: u32,
    ) -> io::Result<SyslogSink> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no syslog socket");
        for path in paths {
            match SyslogConn::connect(path) {
                Ok(conn) => {
                    return Ok(SyslogSink {
                        facility: facility as u8,
                        process,
                        pid,
                        path: path.to_path_buf(),
                        conn: Mutex::new(Some(conn)),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `<PRI>Mmm dd hh:mm:ss PROCESS[PID]: MESSAGE` (the time in UTC).
    fn format(&self, now: SystemTime, record: &Record<'_>) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let severity: u8 = match record.level() {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        let t = civil_utc(now);
        let month = MONTHS[(t.month - 1) as usize % 12];
        // Facility codes are multiples of 8: the priority is their sum.
        format!(
            "<{}>{month} {:>2} {:02}:{:02}:{:02} {}[{}]: {}",
            self.facility + severity,
            t.day,
            t.hour,
            t.minute,
            t.second,
            self.process,
            self.pid,
            record.args()
        )
    }

    fn send(&self, now: SystemTime, record: &Record<'_>) {
        let text = self.format(now, record);
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        // A failed send means the daemon restarted (ECONNREFUSED, EPIPE): reconnect once,
        // else drop the record.
        for attempt in 0..2 {
            if attempt > 0 {
                *conn = SyslogConn::connect(&self.path).ok();
            }
            if let Some(c) = conn.as_mut()
                && c.send(text.as_bytes()).is_ok()
            {
                return;
            }
        }
    }
}

/// Client side of LIB-ZC's master-log: one non-blocking datagram per record.
pub(super) struct MasterLogSink {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    ident: String,
    pid: u32,
}

impl MasterLogSink {
    pub(super) fn new(path: PathBuf, ident: String, pid: u32) -> MasterLogSink {
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

    pub(super) fn send(&self, record: &Record<'_>) {
        let Some(socket) = &self.socket else { return };
        let line = format!("{},{},{}", self.ident, self.pid, record.args());
        // A missing or full collector must never block or fail the program: drop the record.
        let _ = socket.send_to(line.as_bytes(), &self.path);
    }
}

/// The word for a level in a stream line (LIB-ZC's and syslog's habit: `warning`, not `warn`).
pub(super) fn level_word(level: log::Level) -> &'static str {
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
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, UNIX_EPOCH};

    const HANG: Duration = Duration::from_secs(20);

    fn with_record(level: Level, message: &str, f: impl FnOnce(&Record<'_>)) {
        f(&Record::builder()
            .args(format_args!("{message}"))
            .level(level)
            .build());
    }

    /// 2026-11-25T18:01:40.123Z
    fn when() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_629_700_123)
    }

    #[test]
    fn stream_lines_are_one_terminated_line() {
        with_record(Level::Warn, "disk full", |r| {
            assert_eq!(
                stream_line(when(), "smtpd", 42, r),
                "2026-11-25T18:01:40.123Z smtpd[42]: warning: disk full\n"
            );
        });
    }

    #[test]
    fn logger_filters_by_level() {
        let logger = Logger {
            level: LevelFilter::Info,
            ident: "t".into(),
            pid: 1,
            sink: Sink::Stderr,
        };
        let at = |level| Metadata::builder().level(level).build();
        assert!(logger.enabled(&at(Level::Info)));
        assert!(logger.enabled(&at(Level::Error)));
        assert!(!logger.enabled(&at(Level::Debug)));
    }

    #[test]
    fn syslog_datagrams_are_rfc3164_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixDatagram::bind(&path).unwrap();
        // A hang guard: a record that never comes fails the test instead of blocking it.
        daemon.set_read_timeout(Some(HANG)).unwrap();
        let missing = dir.path().join("missing");
        let sink = SyslogSink::connect(
            &[missing.as_path(), path.as_path()],
            syslog::Facility::LOG_MAIL,
            "smtpd".into(),
            42,
        )
        .unwrap();
        let mut buf = [0u8; 256];
        for (level, pri) in [
            (Level::Error, 19),
            (Level::Warn, 20),
            (Level::Info, 22),
            (Level::Debug, 23),
            (Level::Trace, 23),
        ] {
            with_record(level, "hello", |r| sink.send(when(), r));
            let n = daemon.recv(&mut buf).unwrap();
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format!("<{pri}>Nov 25 18:01:40 smtpd[42]: hello")
            );
        }
        let early = UNIX_EPOCH + Duration::from_secs(1_000_000); // 1970-01-12 13:46:40
        with_record(Level::Info, "x", |r| sink.send(early, r));
        let n = daemon.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<22>Jan 12 13:46:40 smtpd[42]: x");
        let jan2 = UNIX_EPOCH + Duration::from_secs(86_400 + 3_661);
        with_record(Level::Info, "x", |r| sink.send(jan2, r));
        let n = daemon.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<22>Jan  2 01:01:01 smtpd[42]: x");
        // The daemon restarts at the same path: the sink reconnects instead of going silent.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon.set_read_timeout(Some(HANG)).unwrap();
        with_record(Level::Info, "again", |r| sink.send(when(), r));
        let n = daemon.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<22>Nov 25 18:01:40 smtpd[42]: again");
    }

    #[test]
    fn syslog_stream_records_end_with_nul() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let daemon = UnixListener::bind(&path).unwrap();
        let sink =
            SyslogSink::connect(&[path.as_path()], syslog::Facility::LOG_USER, "p".into(), 7)
                .unwrap();
        with_record(Level::Info, "one", |r| sink.send(when(), r));
        with_record(Level::Error, "two", |r| sink.send(when(), r));
        let (conn, _) = daemon.accept().unwrap();
        conn.set_read_timeout(Some(HANG)).unwrap();
        let mut reader = BufReader::new(conn);
        let mut record = Vec::new();
        reader.read_until(0, &mut record).unwrap();
        assert_eq!(record, b"<14>Nov 25 18:01:40 p[7]: one\0");
        record.clear();
        reader.read_until(0, &mut record).unwrap();
        assert_eq!(record, b"<11>Nov 25 18:01:40 p[7]: two\0");
    }

    #[test]
    fn syslog_without_a_daemon_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = SyslogSink::connect(
            &[missing.as_path()],
            syslog::Facility::LOG_USER,
            "p".into(),
            1,
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(SyslogSink::connect(&[], syslog::Facility::LOG_USER, "p".into(), 1).is_err());
    }

    #[test]
    fn masterlog_sends_lib_zc_records_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let collector = UnixDatagram::bind(&path).unwrap();
        collector.set_read_timeout(Some(HANG)).unwrap();
        let sink = MasterLogSink::new(path.clone(), "smtpd".into(), 42);
        let record = |msg| with_record(Level::Info, msg, |r| sink.send(r));
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
