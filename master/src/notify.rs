//! systemd's notify protocol (`sd_notify`): READY, RELOADING, STOPPING, STATUS, WATCHDOG,
//! MAINPID (after a binary upgrade).
//!
//! Written here rather than with the `sd-notify` crate: the protocol is one datagram per
//! message to `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), and the master needs
//! to hold the socket open across fork (CLOEXEC, one fd it owns) and to never block on it
//! (a full receive queue drops the message, as libsystemd's does). That is a few lines over
//! `UnixDatagram`; the crate would add a dependency for the same lines.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Where notifications go, and the watchdog period if systemd asked for one.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `WATCHDOG_USEC`: how often to send `WATCHDOG=1`.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` / `WATCHDOG_USEC` / `WATCHDOG_PID`; quiet (sends nothing) without
    /// them. A socket that cannot be opened is one warning, then quiet.
    pub(crate) fn from_env() -> Notifier {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(path) = var("NOTIFY_SOCKET") else {
            return Notifier::default();
        };
        let target = match open(&path) {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={path}: {e}; not notifying systemd");
                return Notifier::default();
            }
        };
        let for_us = var("WATCHDOG_PID").is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = var("WATCHDOG_USEC")
            .filter(|_| for_us)
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0)
            .map(|u| Duration::from_micros(u) / 2);
        Notifier {
            target,
            watchdog,
            last_ping: None,
            last_status: String::new(),
        }
    }

    /// True when there is a `NOTIFY_SOCKET` to send to.
    pub(crate) fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (`KEY=VALUE` lines); errors are logged at debug level only: systemd
    /// not listening must never disturb supervision.
    pub(crate) fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            log::debug!("sd_notify {message:?}: {e}");
        }
    }

    /// `STATUS=line`, only when it changed.
    pub(crate) fn status(&mut self, line: &str) {
        if self.is_active() && self.last_status != line {
            self.send(&format!("STATUS={line}"));
            self.last_status = line.to_owned();
        }
    }

    /// `READY=1` with a status line.
    pub(crate) fn ready(&mut self, line: &str) {
        self.send("READY=1");
        self.status(line);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (systemd's `Type=notify-reload` wants both).
    pub(crate) fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// `MAINPID=pid`: after a binary upgrade the new master is the service's main process.
    /// systemd takes it from the main process (the old master, with the default
    /// `NotifyAccess=main`); the new master sends it too, which counts with `NotifyAccess=all`.
    pub(crate) fn main_pid(&self, pid: u32) {
        self.send(&format!("MAINPID={pid}"));
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&mut self, line: &str) {
        self.send("STOPPING=1");
        self.status(line);
    }

    /// When the next `WATCHDOG=1` is due, if there is a watchdog.
    pub(crate) fn next_ping(&self, now: Instant) -> Option<Instant> {
        let period = self.watchdog.filter(|_| self.is_active())?;
        Some(self.last_ping.map_or(now, |t| t + period))
    }

    /// Sends `WATCHDOG=1` if it is due at `now`.
    pub(crate) fn ping_if_due(&mut self, now: Instant) {
        if self.next_ping(now).is_some_and(|t| t <= now) {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

/// An unbound datagram socket and the address `NOTIFY_SOCKET` names (`@name` = abstract).
fn open(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    // std opens sockets CLOEXEC: no child inherits it.
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: clock_gettime writes one timespec into `ts`, which is valid and exclusively
    // borrowed for the call; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket_and_status_is_sent_on_change_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let (socket, addr) = open(path.to_str().expect("utf-8")).expect("open");
        let mut n = Notifier {
            target: Some((socket, addr)),
            watchdog: Some(Duration::from_millis(500)),
            ..Notifier::default()
        };
        n.ready("2 services");
        n.status("2 services");
        n.main_pid(4242);
        n.reloading();
        let t0 = Instant::now();
        assert_eq!(n.next_ping(t0), Some(t0));
        n.ping_if_due(t0);
        assert_eq!(n.next_ping(t0), Some(t0 + Duration::from_millis(500)));
        n.ping_if_due(t0 + Duration::from_millis(499));
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(len) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        assert_eq!(got[..3], ["READY=1", "STATUS=2 services", "MAINPID=4242"]);
        assert!(
            got[3].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{got:?}"
        );
        let usec: u64 = got[3]
            .rsplit('=')
            .next()
            .and_then(|u| u.parse().ok())
            .expect("usec");
        assert!(usec > 0);
        assert_eq!(got[4..], ["WATCHDOG=1"]);
    }

    #[test]
    fn without_a_socket_nothing_is_due() {
        let n = Notifier {
            watchdog: Some(Duration::from_secs(1)),
            ..Notifier::default()
        };
        assert!(!n.is_active());
        assert_eq!(n.next_ping(Instant::now()), None);
    }
}
