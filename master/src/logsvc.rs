//! `-log-service SOCK,PREFIX[,day|hour]`: the master-side collector of LIB-ZC's master-log.
//!
//! Servers with `server-log = masterlog,SOCK` send one datagram per record, `IDENT,PID,message`;
//! this thread appends `HH:MM:SS IDENT[PID] message` to `DIR/YYYYMMDD.log` (or `YYYYMMDDHH.log`
//! with `hour`), LIB-ZC's layout — except that times are UTC, not local time.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use zmaster_core::logging::utc_timestamp;

use crate::error::{Error, ErrorKind, Result};

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
}

impl LogService {
    /// Parses `SOCK,PREFIX[,day|hour]`.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(value: &str) -> Result<LogService> {
        let parts: Vec<&str> = value.split(',').map(str::trim).collect();
        let bad = || {
            Error::new(
                ErrorKind::Usage,
                format!("-log-service {value:?}: expected SOCK,PREFIX[,day|hour]"),
            )
        };
        let rotation = match parts.get(2).copied() {
            None | Some("day") => Rotation::Day,
            Some("hour") => Rotation::Hour,
            Some(_) => return Err(bad()),
        };
        match parts.as_slice() {
            [sock, prefix, ..] if !sock.is_empty() && !prefix.is_empty() && parts.len() <= 3 => {
                Ok(LogService {
                    socket: sock.into(),
                    prefix: prefix.into(),
                    rotation,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Binds the socket and starts the collector thread. The socket file is removed by
    /// [`LogService::remove_socket`] at stop.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub fn start(&self) -> Result<()> {
        if fs::symlink_metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = fs::remove_file(&self.socket);
        }
        fs::create_dir_all(&self.prefix)
            .map_err(|e| Error::io(format!("create log dir {}", self.prefix.display()), e))?;
        let socket = UnixDatagram::bind(&self.socket)
            .map_err(|e| Error::io(format!("bind log service {}", self.socket.display()), e))?;
        let this = self.clone();
        std::thread::Builder::new()
            .name("zm-log-service".into())
            .spawn(move || this.collect(&socket))
            .map_err(|e| Error::io("start log service thread", e))?;
        Ok(())
    }

    /// Removes the socket file.
    pub fn remove_socket(&self) {
        if fs::symlink_metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = fs::remove_file(&self.socket);
        }
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
            let text = String::from_utf8_lossy(&buf[..n]);
            let mut parts = text.splitn(3, ',');
            let (ident, pid, message) = match (parts.next(), parts.next(), parts.next()) {
                (Some(i), Some(p), Some(m)) => (i, p, m),
                _ => ("?", "?", text.as_ref()),
            };
            let now = SystemTime::now();
            let path = self.file_name(now);
            if open.as_ref().is_none_or(|(p, _)| *p != path) {
                open = append(&path).map(|f| (path.clone(), f));
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
    }

    #[test]
    fn collects_records_into_dated_files() {
        let dir = tempfile::tempdir().unwrap();
        let svc = LogService {
            socket: dir.path().join("log.sock"),
            prefix: dir.path().join("logs"),
            rotation: Rotation::Day,
        };
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
    }
}
