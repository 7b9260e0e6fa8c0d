//! `-log-service SOCK,PREFIX[,day|hour]`: the master-side collector of LIB-ZC's master-log.
//!
//! Servers with `server-log = masterlog,SOCK` send one datagram per record, `IDENT,PID,message`;
//! this thread appends `HH:MM:SS IDENT[PID] message` to `DIR/YYYYMMDD.log` (or `YYYYMMDDHH.log`
//! with `hour`), LIB-ZC's layout — except that times are UTC, not local time.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use zmaster_core::bind::{self, SocketKind};
use zmaster_core::error::quoted;
use zmaster_core::logging::utc_timestamp;

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How often the collector starts a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// One file per day (`DIR/YYYYMMDD.log`).
    Day,
    /// One file per hour (`DIR/YYYYMMDDHH.log`).
    Hour,
}

/// A parsed `-log-service` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogService {
    /// The datagram socket servers send to.
    pub socket: PathBuf,
    /// The dir the log files go to (created if missing).
    pub prefix: PathBuf,
    /// Rotation.
    pub rotation: Rotation,
    bound: Bound,
    reopen: Reopen,
}

/// Set by [`LogService::reopen`] (SIGUSR1), shared by clones: the collector drops its open
/// file before its next record, so a file renamed away (logrotate) is followed by a new one at
/// the path. Runtime state: every two `Reopen`s compare equal.
#[derive(Debug, Clone, Default)]
struct Reopen(Arc<AtomicBool>);

impl PartialEq for Reopen {
    fn eq(&self, _: &Reopen) -> bool {
        true
    }
}

impl Eq for Reopen {}

/// The (device, inode) of the socket file [`LogService::start`] bound, shared by clones: stop
/// removes the path only while it is still that file. Runtime state, not part of the parsed
/// value: every two `Bound`s compare equal.
#[derive(Debug, Clone, Default)]
struct Bound(Arc<Mutex<Option<(u64, u64)>>>);

impl Bound {
    fn get(&self) -> Option<(u64, u64)> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, id: Option<(u64, u64)>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = id;
    }
}

impl PartialEq for Bound {
    fn eq(&self, _: &Bound) -> bool {
        true
    }
}

impl Eq for Bound {}

impl LogService {
    /// A log service on `socket` writing into `prefix`, not started yet.
    pub fn new(socket: impl Into<PathBuf>, prefix: impl Into<PathBuf>, rotation: Rotation) -> Self {
        LogService {
            socket: socket.into(),
            prefix: prefix.into(),
            rotation,
            bound: Bound::default(),
            reopen: Reopen::default(),
        }
    }

    /// Parses `SOCK,PREFIX[,day|hour]`.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(value: &str) -> Result<LogService> {
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        let bad = || {
            Error::new(
                ErrorKind::Usage,
                format!(
                    "-log-service {}: expected SOCK,PREFIX[,day|hour]",
                    quoted(value)
                ),
            )
        };
        let rotation = match parts.get(2).copied() {
            None | Some("day") => Rotation::Day,
            Some("hour") => Rotation::Hour,
            Some(_) => return Err(bad()),
        };
        match parts.as_slice() {
            [sock, prefix, ..] if !sock.is_empty() && !prefix.is_empty() && parts.len() <= 3 => {
                Ok(LogService::new(*sock, *prefix, rotation))
            }
            _ => Err(bad()),
        }
    }

    /// Binds the socket and starts the collector thread. A socket file already at the path is
    /// replaced only when it is stale (nothing answers there), as for listeners. The socket
    /// file is removed by [`LogService::remove_socket`] at stop.
    ///
    /// # Errors
    /// The socket cannot be bound: a live socket (another master's) or a non-socket is there.
    pub fn start(&self) -> Result<()> {
        let what = || format!("bind log service {}", self.socket.display());
        fs::create_dir_all(&self.prefix)
            .map_err(|e| Error::io(format!("create log dir {}", self.prefix.display()), e))?;
        bind::remove_stale_socket(&self.socket, SocketKind::Datagram)
            .map_err(|e| Error::io(what(), e))?;
        let socket = UnixDatagram::bind(&self.socket).map_err(|e| Error::io(what(), e))?;
        let id = bind::file_id(&self.socket).map_err(|e| Error::io(what(), e))?;
        self.bound.set(Some(id));
        let this = self.clone();
        std::thread::Builder::new()
            .name("zm-log-service".into())
            .spawn(move || this.collect(&socket))
            .map_err(|e| Error::io("start log service thread", e))?;
        Ok(())
    }

    /// Removes the socket file [`LogService::start`] bound, if the path still is that file: a
    /// socket someone else bound there since is left alone.
    pub fn remove_socket(&self) {
        if let Some(id) = self.bound.get() {
            bind::remove_if_ours(&self.socket, id);
            self.bound.set(None);
        }
    }

    /// Asks the collector to reopen its file before the next record (SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.0.store(true, Ordering::Release);
    }

    fn file_name(&self, now: SystemTime) -> PathBuf {
        let stamp = utc_timestamp(now); // 2026-11-25T18:01:40.123Z
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        let keep = if self.rotation == Rotation::Day {
            8
        } else {
            10
        };
        self.prefix.join(format!("{}.log", &digits[..keep]))
    }

    fn collect(&self, socket: &UnixDatagram) {
        let mut buf = vec![0u8; 65536];
        let mut open: Option<(PathBuf, File)> = None;
        while let Ok(n) = socket.recv(&mut buf) {
            self.write_record(&mut open, SystemTime::now(), &buf[..n]);
        }
    }

    /// Appends one record received at `now` to its file, switching `open` to a new file when
    /// the rotation moved on.
    fn write_record(&self, open: &mut Option<(PathBuf, File)>, now: SystemTime, record: &[u8]) {
        let text = String::from_utf8_lossy(record);
        let mut parts = text.splitn(3, ',');
        let (ident, pid, message) = match (parts.next(), parts.next(), parts.next()) {
            (Some(i), Some(p), Some(m)) => (i, p, m),
            _ => ("?", "?", text.as_ref()),
        };
        let path = self.file_name(now);
        let reopen = self.reopen.0.swap(false, Ordering::AcqRel);
        if reopen || open.as_ref().is_none_or(|(p, _)| *p != path) {
            // Opening only takes a number (the lowest free one); closing the old file frees
            // one, which must not happen while a child is spawned (sys.rs, fd staging). The
            // open stays outside the lock: it may block (a FIFO at the path) and must not hold
            // up the master's spawns.
            let new = append(&path).map(|f| (path.clone(), f));
            let _fd_table = sys::fd_table();
            *open = new;
        }
        if let Some((_, file)) = open.as_mut() {
            let stamp = utc_timestamp(now);
            let _ = writeln!(
                file,
                "{} {ident}[{pid}] {}",
                &stamp[11..19],
                message.trim_end()
            );
        }
    }
}

fn append(path: &Path) -> Option<File> {
    OpenOptions::new().create(true).append(true).open(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let l = LogService::parse("/run/log.sock,/var/log/zm").unwrap();
        assert_eq!(l.rotation, Rotation::Day);
        assert_eq!(
            LogService::parse("/s,/p,hour").unwrap().rotation,
            Rotation::Hour
        );
        for bad in ["", "/s", "/s,", ",/p", "/s,/p,week", "/s,/p,day,x"] {
            assert!(LogService::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("/s,/p,{}", "w".repeat(4_000));
        let err = LogService::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 300 && err.contains("…(4006 bytes)"), "{err}");
    }

    #[test]
    fn collects_records_into_dated_files() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LogService::new(
            dir.path().join("log.sock"),
            dir.path().join("logs"),
            Rotation::Day,
        );
        svc.start().unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client
            .send_to(b"smtpd,42,hello world", &svc.socket)
            .unwrap();
        let file = svc.file_name(SystemTime::now());
        let mut text = String::new();
        for _ in 0..500 {
            text = fs::read_to_string(&file).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(text.ends_with(" smtpd[42] hello world\n"), "{text:?}");
        assert!(file.to_str().unwrap().ends_with(".log"));
        svc.remove_socket();
        assert!(!svc.socket.exists());
    }

    #[test]
    fn reopen_follows_a_file_renamed_away() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LogService::new(dir.path().join("s"), dir.path().join("logs"), Rotation::Day);
        fs::create_dir_all(&svc.prefix).unwrap();
        let now = SystemTime::now();
        let path = svc.file_name(now);
        let rotated = dir.path().join("rotated.log");
        let mut open = None;
        svc.write_record(&mut open, now, b"a,1,before");
        fs::rename(&path, &rotated).unwrap();
        svc.write_record(&mut open, now, b"a,1,still the old file");
        svc.clone().reopen(); // a clone (the supervisor's) asks
        svc.write_record(&mut open, now, b"a,1,after");
        drop(open);
        let old = fs::read_to_string(&rotated).unwrap();
        assert!(old.contains(" a[1] before\n"), "{old:?}");
        assert!(old.ends_with("a[1] still the old file\n"), "{old:?}");
        let new = fs::read_to_string(&path).unwrap();
        assert!(
            new.ends_with(" a[1] after\n") && new.lines().count() == 1,
            "{new:?}"
        );
    }

    #[test]
    fn records_go_to_the_file_of_their_day_or_hour() {
        let dir = tempfile::tempdir().unwrap();
        // 2025-11-25T18:01:40Z, and an hour later.
        let six = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_093_700);
        let seven = six + std::time::Duration::from_secs(3600);
        let hourly = LogService::new(dir.path().join("s"), dir.path().join("h"), Rotation::Hour);
        fs::create_dir_all(&hourly.prefix).unwrap();
        let mut open = None;
        hourly.write_record(&mut open, six, b"a,1,first");
        hourly.write_record(&mut open, six, b"a,1,second");
        hourly.write_record(&mut open, seven, b"b,2,third");
        hourly.write_record(&mut open, seven, b"no commas");
        drop(open);
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("h/2025112518.log"),
            "18:01:40 a[1] first\n18:01:40 a[1] second\n"
        );
        assert_eq!(
            read("h/2025112519.log"),
            "19:01:40 b[2] third\n19:01:40 ?[?] no commas\n"
        );
        let daily = LogService::new(dir.path().join("s"), dir.path().join("d"), Rotation::Day);
        assert_eq!(daily.file_name(six), dir.path().join("d/20251125.log"));
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_replaced_one_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("log.sock");
        let first = LogService::new(&sock, dir.path().join("a"), Rotation::Day);
        first.start().unwrap();
        let second = LogService::new(&sock, dir.path().join("b"), Rotation::Hour);
        let err = second.start().unwrap_err().to_string();
        assert!(err.contains("live socket"), "{err}");
        second.remove_socket(); // never started: removes nothing
        assert!(sock.exists());
        // Someone replaces the path; stop leaves their socket alone.
        fs::remove_file(&sock).unwrap();
        let _theirs = UnixDatagram::bind(&sock).unwrap();
        first.remove_socket();
        assert!(sock.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("log.sock");
        drop(UnixDatagram::bind(&sock).unwrap());
        let svc = LogService::new(&sock, dir.path().join("logs"), Rotation::Day);
        svc.start().unwrap();
        assert_eq!(
            svc,
            LogService::parse(&format!(
                "{},{}",
                sock.display(),
                dir.path().join("logs").display()
            ))
            .unwrap()
        );
        svc.remove_socket();
        assert!(!sock.exists());
    }
}
