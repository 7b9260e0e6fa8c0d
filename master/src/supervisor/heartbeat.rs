//! The heartbeat memfd a zmaster child shares with the master: its beats and why it retired.
//!
//! Design notes (SPEC §13 `server-hang-timeout`, docs/lifecycle.md):
//! - When a service sets any §13 server-side limit, the master creates one 64-byte memfd per
//!   child before the fork, stages it just after the listeners (fd 5 + number of listeners)
//!   and names it in `ZM_HEARTBEAT_FD`. The child's fd and the master's are the same open
//!   file, so what one writes the other reads with `pread`: no socket, no extra thread.
//! - Layout: bytes 0..8 = CLOCK_MONOTONIC nanoseconds of the child's last beat (native byte
//!   order; 0 = never beat), byte 8 = its retire reason ([`Retire`] code; 0 = none).
//! - A LIB-ZC server does not know the variable: it never writes, its beat stays 0, and the
//!   master never watches it. A zmaster server beats from its main thread at start and then at
//!   least every min(1 s, timeout / 4); once it beat, a beat older than the timeout means the
//!   whole process is frozen (stopped, deadlocked, swapped to death): `SIGKILL`, and it is
//!   replaced like any exit. A thread stuck in a handler is the server's own watchdog's job.
//! - A freeze of the master together with its children (docker pause, a cgroup freeze, a
//!   paused VM) makes every beat stale by the master's clock on thaw, before the children
//!   had a chance to beat again. So a check that comes much later than its interval (the
//!   master itself was not running) only re-reads, and a child is killed only when its beat
//!   was stale on two checks at least one interval apart on the master's own clock: children
//!   beat at least twice an interval, so a live one is fresh by then.
//! - Before a limit retires it (detach), the server writes the reason byte, so the master can
//!   say why the child left and never count a retirement as a young death.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::sys::uio::pread;
use nix::unistd::{Pid, ftruncate};

use super::Supervisor;
use super::children::ExitReason;
use crate::human_duration;
use crate::services::process::ServerLimits;
use crate::sys;

/// The memfd's size: the beat, the reason byte, room to grow.
const SIZE: i64 = 64;
/// Where the retire reason byte is.
const REASON_AT: i64 = 8;
/// The master never checks more often than this, however short the timeout.
const MIN_CHECK: Duration = Duration::from_millis(50);
/// Nor less often than this, however long: a stopped child is killed within the timeout and
/// two intervals (the stale sighting, then the confirming one).
const MAX_CHECK: Duration = Duration::from_millis(400);
/// A check this many intervals after the last one means the master was not running.
const LATE_CHECKS: u32 = 2;

/// Why a zmaster server retired itself (SPEC §13), as its reason byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retire {
    MaxUse,
    Idle,
    Memory,
    Hang,
}

impl Retire {
    /// The reason for byte `code` (the server's `lifecycle::reason_code` writes them).
    pub(crate) fn from_code(code: u8) -> Option<Retire> {
        match code {
            1 => Some(Retire::MaxUse),
            2 => Some(Retire::Idle),
            3 => Some(Retire::Memory),
            4 => Some(Retire::Hang),
            _ => None,
        }
    }
}

impl fmt::Display for Retire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Retire::MaxUse => "max-use",
            Retire::Idle => "idle",
            Retire::Memory => "memory",
            Retire::Hang => "hang",
        })
    }
}

/// How a child left: its exit status, and what the master knows of why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) status: ExitReason,
    /// The reason it retired itself, if it did.
    pub(crate) retired: Option<Retire>,
    /// The age of its heartbeat when the master killed it as hung.
    pub(crate) hang: Option<Duration>,
}

impl Exit {
    /// An exit the master knows nothing more about.
    #[cfg(test)]
    pub(crate) fn plain(status: ExitReason) -> Exit {
        Exit {
            status,
            retired: None,
            hang: None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = self.retired {
            write!(f, "retired ({reason}), ")?;
        }
        write!(f, "{}", self.status)?;
        if let Some(age) = self.hang {
            write!(f, " (hang: no heartbeat for {})", human_duration(age))?;
        }
        Ok(())
    }
}

/// The master's end of one child's heartbeat memfd.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    fd: OwnedFd,
    /// `server-hang-timeout` when it is watched (> 0).
    timeout: Option<Duration>,
    /// The master's CLOCK_MONOTONIC ns at the last check (0: never checked).
    checked_ns: u64,
    /// The master's CLOCK_MONOTONIC ns at the check that first saw the beat stale (0: it was
    /// fresh at the last check).
    stale_since_ns: u64,
}

impl Heartbeat {
    /// A new zeroed memfd (CLOEXEC: only the staging `dup2` gives it to the child); watched
    /// for `hang_timeout` when that is not zero.
    pub(crate) fn create(hang_timeout: Duration) -> nix::Result<Heartbeat> {
        let fd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC)?;
        ftruncate(&fd, SIZE)?;
        Ok(Heartbeat {
            fd,
            timeout: (!hang_timeout.is_zero()).then_some(hang_timeout),
            checked_ns: 0,
            stale_since_ns: 0,
        })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The watched timeout, if any.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Stops watching (the child was killed; it cannot beat again).
    pub(crate) fn unwatch(&mut self) {
        self.timeout = None;
    }

    /// The last beat (CLOCK_MONOTONIC ns), 0 when it never beat or cannot be read.
    pub(crate) fn last_beat(&self) -> u64 {
        let mut buf = [0u8; 8];
        match pread(self.fd.as_fd(), &mut buf, 0) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }

    /// The reason the child retired, if it wrote one.
    pub(crate) fn retired(&self) -> Option<Retire> {
        let mut buf = [0u8; 1];
        match pread(self.fd.as_fd(), &mut buf, REASON_AT) {
            Ok(1) => Retire::from_code(buf[0]),
            _ => None,
        }
    }

    /// How old its beat is at `now_ns` when that is older than the timeout; `None` when it
    /// is not watched, never beat, or beat recently. A beat is read twice before it counts as
    /// stale: a read racing the child's write must never get a healthy child killed.
    pub(crate) fn stale(&self, now_ns: u64) -> Option<Duration> {
        let timeout = self.timeout?;
        let first = hung_for(self.last_beat(), now_ns, timeout)?;
        hung_for(self.last_beat(), now_ns, timeout).map(|second| second.min(first))
    }

    /// One check at `now_ns` (the master's clock): the beat's age when the child is to be
    /// killed. A check coming more than [`LATE_CHECKS`] intervals after the previous one only
    /// re-reads (the master was frozen too: nobody had a chance to beat); a stale beat counts
    /// only when it was stale at a check at least one interval before as well.
    pub(crate) fn check(&mut self, now_ns: u64) -> Option<Duration> {
        let timeout = self.timeout?;
        let every = check_interval(timeout);
        let previous = std::mem::replace(&mut self.checked_ns, now_ns);
        let gap = Duration::from_nanos(now_ns.saturating_sub(previous));
        let Some(age) = self
            .stale(now_ns)
            .filter(|_| previous == 0 || gap <= every * LATE_CHECKS)
        else {
            self.stale_since_ns = 0;
            return None;
        };
        if self.stale_since_ns == 0 {
            self.stale_since_ns = now_ns;
            return None;
        }
        (Duration::from_nanos(now_ns.saturating_sub(self.stale_since_ns)) >= every).then_some(age)
    }

    /// How long after `now_ns` this heartbeat wants its next check (`None`: not watched): one
    /// interval, or the rest of it when a stale beat waits for its confirming check.
    pub(crate) fn next_check_in(&self, now_ns: u64) -> Option<Duration> {
        let every = check_interval(self.timeout?);
        if self.stale_since_ns == 0 {
            return Some(every);
        }
        let since = Duration::from_nanos(now_ns.saturating_sub(self.stale_since_ns));
        Some(every.saturating_sub(since))
    }
}

/// The age of a beat at `beat_ns` seen at `now_ns` if it is older than `timeout`; never for a
/// child that did not beat yet (`beat_ns` 0: a LIB-ZC server, or one still starting).
pub(crate) fn hung_for(beat_ns: u64, now_ns: u64, timeout: Duration) -> Option<Duration> {
    if beat_ns == 0 {
        return None;
    }
    let age = Duration::from_nanos(now_ns.saturating_sub(beat_ns));
    (age > timeout).then_some(age)
}

/// How often the master checks a child watched with `timeout`: a quarter of it, within
/// 50 ms .. 400 ms.
pub(crate) fn check_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(MIN_CHECK, MAX_CHECK)
}

/// Creates the memfd for a child of a service with `limits`, when it has any §13 server-side
/// limit; a failure is logged and the child starts without one (it just cannot be watched).
pub(crate) fn for_child(service: &str, limits: &ServerLimits) -> Option<Heartbeat> {
    if !limits.any() {
        return None;
    }
    match Heartbeat::create(limits.hang_timeout) {
        Ok(heartbeat) => Some(heartbeat),
        Err(e) => {
            log::warn!("service={service} cannot create a heartbeat memfd: {e}; not watched");
            None
        }
    }
}

impl Supervisor {
    /// SIGKILLs every child whose heartbeat is older than its service's hang timeout (draining
    /// and detached ones too: a frozen process never finishes its connections).
    pub(super) fn check_heartbeats(&mut self) {
        let now_ns = sys::monotonic_ns();
        for (pid, child) in self.children.iter_mut() {
            let Some(heartbeat) = child.heartbeat.as_mut() else {
                continue;
            };
            let (Some(timeout), Some(age)) = (heartbeat.timeout(), heartbeat.check(now_ns)) else {
                continue;
            };
            log::warn!(
                "service={} pid={pid} heartbeat is {} old (server-hang-timeout {}): killing it",
                child.service,
                human_duration(age),
                human_duration(timeout)
            );
            heartbeat.unwatch();
            child.hung = Some(age);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// When the next heartbeat check is due (`None`: no child is watched).
    pub(super) fn next_heartbeat_check(&self, now: Instant) -> Option<Instant> {
        let now_ns = sys::monotonic_ns();
        self.children
            .iter()
            .filter_map(|(_, c)| c.heartbeat.as_ref()?.next_check_in(now_ns))
            .min()
            // poll's timeout is whole milliseconds, rounded down: never wake before it is due.
            .map(|wait| now + wait + Duration::from_millis(1))
    }
}

#[cfg(test)]
#[path = "heartbeat_tests.rs"]
mod tests;
