//! Inherited listeners, from two sources: the sockets systemd passed (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`) and the ones an upgrading master handed over
//! (`ZMASTER_UPGRADE_FDS`, SPEC §14). Both are [`Passed`] sockets that the listener set adopts
//! the same way (`ListenerSet::adopt_and_bind`): each is matched by its own address
//! (`getsockname`, `SO_TYPE`; a FIFO by its inode), never by what the variable says.
//!
//! `ZMASTER_UPGRADE_FDS` is `ppid=P;ready=R[;pidlock=L][;control=C][;bound=A,B,...]
//! [;systemd=D,...]`: the old master's pid (the variable counts only in its direct child: a
//! server started later that sees it takes nothing), the readiness pipe's write end, the pid
//! file (its open file, which holds the `flock`), the control socket's listener, the listeners
//! the old master bound itself, and those systemd had passed to it. Only fd numbers: an
//! address (a unix path may hold any byte) never has to be parsed back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use socket2::{SockRef, Type};
use zmaster_core::addr::Address;

/// The first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// The most fds either source may name: a bogus count must not make the master take over fds
/// it never got.
const MAX_PASSED: usize = 4096;
/// The variable an upgrading master sets for its successor.
pub(crate) const UPGRADE_ENV: &str = "ZMASTER_UPGRADE_FDS";

/// Who passed a socket: systemd (its socket file is systemd's), or the old master of an
/// upgrade, which bound it itself (its unix socket file becomes the new master's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Systemd,
    OldMaster,
}

/// One passed socket.
#[derive(Debug)]
pub(crate) struct Passed {
    fd: OwnedFd,
    /// Its `LISTEN_FDNAMES` entry, if any.
    name: Option<String>,
    pub(crate) origin: Origin,
}

impl Passed {
    /// A passed socket made by a test.
    #[cfg(test)]
    pub(crate) fn new(fd: OwnedFd, origin: Origin) -> Passed {
        Passed {
            fd,
            name: None,
            origin,
        }
    }

    /// A second fd for the same socket (tests adopt one socket twice).
    #[cfg(test)]
    pub(crate) fn fd_for_test(&self) -> OwnedFd {
        self.fd.try_clone().expect("dup")
    }

    /// True when it is a stream socket bound to `addr` (compared with getsockname, SO_TYPE),
    /// or the FIFO at `addr` (the same inode).
    pub(crate) fn matches(&self, addr: &Address) -> bool {
        if let Address::Fifo(path) = addr {
            return same_fifo(&self.fd, path);
        }
        let sock = SockRef::from(&self.fd);
        if !sock.r#type().is_ok_and(|t| t == Type::STREAM) {
            return false;
        }
        let Ok(local) = sock.local_addr() else {
            return false;
        };
        match addr {
            Address::Inet(want) => local.as_socket() == Some(*want),
            Address::Unix(want) => local.as_pathname().is_some_and(|got| same_path(got, want)),
            Address::Fifo(_) => false,
        }
    }

    /// The fd and its name, for log lines.
    pub(crate) fn describe(&self) -> String {
        let fd = self.fd.as_raw_fd();
        match &self.name {
            Some(name) => format!("fd {fd} \"{name}\""),
            None => format!("fd {fd}"),
        }
    }

    /// Who passed it, for log lines.
    pub(crate) fn from(&self) -> &'static str {
        match self.origin {
            Origin::Systemd => "systemd",
            Origin::OldMaster => "the old master",
        }
    }

    /// Adopted: its fd, non-blocking as every listener of the master (SPEC §4) and
    /// close-on-exec (children get it through the fd staging only).
    pub(crate) fn into_fd(self) -> OwnedFd {
        let cloexec = nix::fcntl::fcntl(
            &self.fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        let nonblocking =
            nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_GETFL).and_then(|flags| {
                let flags =
                    nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
                nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_SETFL(flags))
            });
        if let Err(e) = cloexec.and(nonblocking) {
            log::warn!("passed {}: {e}", self.describe());
        }
        self.fd
    }
}

fn same_path(got: &Path, want: &Path) -> bool {
    got == want || std::path::absolute(got).ok() == std::path::absolute(want).ok()
}

/// True when `fd` is the FIFO at `path` (same device and inode).
fn same_fifo(fd: &OwnedFd, path: &Path) -> bool {
    let Ok(file) = fd.try_clone().map(std::fs::File::from) else {
        return false;
    };
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(got), Ok(want)) => {
            got.file_type().is_fifo() && (got.dev(), got.ino()) == (want.dev(), want.ino())
        }
        _ => false,
    }
}

/// The number of fds systemd passed to this process: `LISTEN_FDS` when `LISTEN_PID` is our
/// pid, else 0 (the variables were meant for another process).
fn passed_count(pid: Option<&str>, fds: Option<&str>, our_pid: u32) -> usize {
    let ours = pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(our_pid);
    match (ours, fds.and_then(|n| n.trim().parse::<usize>().ok())) {
        (true, Some(n)) => n.min(MAX_PASSED),
        _ => 0,
    }
}

/// Takes ownership of inherited fd `fd`, if it is open.
fn take_fd(fd: RawFd, what: &str) -> Option<OwnedFd> {
    if std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err() {
        log::warn!("{what}: fd {fd} is not open; skipped");
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: the fd was passed to this process at exec (systemd's LISTEN_FDS for our pid, or
    // our parent's ZMASTER_UPGRADE_FDS: see `Handover::parse`) and is open (checked just
    // above). Nothing else in the master owns it: it was open before main, so no later open
    // reused the number, and every fd is taken once, at start (`take_inherited` runs once and
    // `Handover::parse` refuses a number named twice). The OwnedFd is its only owner from here.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The sockets systemd passed, once, at start. Fds that are not open are skipped.
fn take_systemd() -> Vec<Passed> {
    let var = |k: &str| std::env::var(k).ok();
    let count = passed_count(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    );
    let names = var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':').map(str::to_owned);
    let mut passed = Vec::with_capacity(count);
    for fd in (FIRST_FD..).take(count) {
        let name = names.next().filter(|n| !n.is_empty());
        if let Some(fd) = take_fd(fd, "LISTEN_FDS") {
            passed.push(Passed {
                fd,
                name,
                origin: Origin::Systemd,
            });
        }
    }
    passed
}

/// What `ZMASTER_UPGRADE_FDS` names, as numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Handover {
    /// The old master's pid: the variable is for its direct child only.
    pub(crate) ppid: u32,
    pub(crate) ready: RawFd,
    pub(crate) pidlock: Option<RawFd>,
    pub(crate) control: Option<RawFd>,
    /// Listeners the old master bound itself.
    pub(crate) bound: Vec<RawFd>,
    /// Listeners systemd had passed to the old master.
    pub(crate) systemd: Vec<RawFd>,
}

impl Handover {
    /// The variable's value.
    pub(crate) fn format(&self) -> String {
        let list = |fds: &[RawFd]| {
            fds.iter()
                .map(RawFd::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = format!("ppid={};ready={}", self.ppid, self.ready);
        if let Some(fd) = self.pidlock {
            out.push_str(&format!(";pidlock={fd}"));
        }
        if let Some(fd) = self.control {
            out.push_str(&format!(";control={fd}"));
        }
        if !self.bound.is_empty() {
            out.push_str(&format!(";bound={}", list(&self.bound)));
        }
        if !self.systemd.is_empty() {
            out.push_str(&format!(";systemd={}", list(&self.systemd)));
        }
        out
    }

    /// Parses the variable's value. Never panics.
    ///
    /// # Errors
    /// Unknown or repeated keys, a missing `ppid` or `ready`, an fd below 3 or named twice,
    /// more than 4096 fds.
    pub(crate) fn parse(value: &str) -> Result<Handover, String> {
        let mut h = Handover::default();
        let (mut ppid, mut ready) = (None, None);
        let mut seen: Vec<&str> = Vec::new();
        let mut all: Vec<RawFd> = Vec::new();
        for item in value.split(';').filter(|i| !i.trim().is_empty()) {
            let Some((key, val)) = item.split_once('=') else {
                return Err(format!("{item:?} is not key=value"));
            };
            let key = key.trim();
            if seen.contains(&key) {
                return Err(format!("{key} given twice"));
            }
            seen.push(key);
            match key {
                "ppid" => {
                    let pid = val.trim().parse::<u32>();
                    ppid = Some(pid.map_err(|_| format!("ppid {val:?} is not a pid"))?);
                }
                "ready" => ready = Some(parse_fd(val, &mut all)?),
                "pidlock" => h.pidlock = Some(parse_fd(val, &mut all)?),
                "control" => h.control = Some(parse_fd(val, &mut all)?),
                "bound" => h.bound = parse_fds(val, &mut all)?,
                "systemd" => h.systemd = parse_fds(val, &mut all)?,
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        match (ppid, ready) {
            (Some(ppid), Some(ready)) => Ok(Handover { ppid, ready, ..h }),
            _ => Err("ppid= and ready= are required".into()),
        }
    }
}

/// One fd number of the handover: at least 3, not named before (`all` holds those), and not
/// more than [`MAX_PASSED`] in all.
fn parse_fd(text: &str, all: &mut Vec<RawFd>) -> Result<RawFd, String> {
    let fd: RawFd = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an fd number"))?;
    if fd < FIRST_FD {
        return Err(format!("fd {fd} is below {FIRST_FD}"));
    }
    if all.contains(&fd) {
        return Err(format!("fd {fd} is named twice"));
    }
    if all.len() >= MAX_PASSED {
        return Err(format!("more than {MAX_PASSED} fds"));
    }
    all.push(fd);
    Ok(fd)
}

/// A comma-separated list of fd numbers, each as [`parse_fd`].
fn parse_fds(text: &str, all: &mut Vec<RawFd>) -> Result<Vec<RawFd>, String> {
    text.split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_fd(v, all))
        .collect()
}

/// The fds of an upgrade that are not listeners: the readiness pipe, the pid file, the
/// control socket.
#[derive(Debug)]
pub(crate) struct HandedOver {
    pub(crate) ready: OwnedFd,
    pub(crate) pidlock: Option<OwnedFd>,
    pub(crate) control: Option<OwnedFd>,
}

/// Everything this process inherited to adopt: listeners (from systemd, from an old master)
/// and, when started by an upgrade, the old master's other fds.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub(crate) listeners: Vec<Passed>,
    pub(crate) upgrade: Option<HandedOver>,
}

/// Takes every inherited fd, once, at start (before the master opens anything of its own).
/// A `ZMASTER_UPGRADE_FDS` that is not for this process (another parent) or does not parse
/// is ignored with a warning.
pub(crate) fn take_inherited() -> Inherited {
    let mut inherited = Inherited {
        listeners: take_systemd(),
        upgrade: None,
    };
    let Some(value) = std::env::var(UPGRADE_ENV).ok().filter(|v| !v.is_empty()) else {
        return inherited;
    };
    let handover = match Handover::parse(&value) {
        Ok(h) if h.ppid == std::os::unix::process::parent_id() => h,
        Ok(h) => {
            log::debug!(
                "{UPGRADE_ENV} is for a child of pid {}, not of ours; ignored",
                h.ppid
            );
            return inherited;
        }
        Err(e) => {
            log::warn!("{UPGRADE_ENV}={value:?}: {e}; ignored");
            return inherited;
        }
    };
    let Some(ready) = take_fd(handover.ready, UPGRADE_ENV) else {
        return inherited;
    };
    let listener = |fd, origin| {
        take_fd(fd, UPGRADE_ENV).map(|fd| Passed {
            fd,
            name: None,
            origin,
        })
    };
    let from_old = handover
        .bound
        .iter()
        .map(|fd| listener(*fd, Origin::OldMaster));
    let from_old: Vec<Passed> = from_old.flatten().collect();
    let from_systemd = handover
        .systemd
        .iter()
        .map(|fd| listener(*fd, Origin::Systemd));
    let from_systemd: Vec<Passed> = from_systemd.flatten().collect();
    inherited.listeners.extend(from_old);
    inherited.listeners.extend(from_systemd);
    inherited.upgrade = Some(HandedOver {
        ready,
        pidlock: handover.pidlock.and_then(|fd| take_fd(fd, UPGRADE_ENV)),
        control: handover.control.and_then(|fd| take_fd(fd, UPGRADE_ENV)),
    });
    inherited
}

#[cfg(test)]
#[path = "activation_tests.rs"]
mod tests;
