//! Socket activation: the sockets systemd passed (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{SockRef, Type};
use zmaster_core::addr::Address;

/// The first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// One socket passed by systemd.
#[derive(Debug)]
pub(crate) struct Passed {
    fd: OwnedFd,
    /// Its `LISTEN_FDNAMES` entry, if any.
    name: Option<String>,
}

impl Passed {
    /// True when it is a stream socket bound to `addr` (compared with getsockname, SO_TYPE).
    pub(crate) fn matches(&self, addr: &Address) -> bool {
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

    /// Adopted: its fd, non-blocking as every listener of the master (SPEC §4).
    pub(crate) fn into_fd(self) -> OwnedFd {
        let sock = SockRef::from(&self.fd);
        if let Err(e) = sock
            .set_nonblocking(true)
            .and_then(|()| sock.set_cloexec(true))
        {
            log::warn!("passed {}: {e}", self.describe());
        }
        self.fd
    }
}

fn same_path(got: &Path, want: &Path) -> bool {
    got == want || std::path::absolute(got).ok() == std::path::absolute(want).ok()
}

/// The number of fds systemd passed to this process: `LISTEN_FDS` when `LISTEN_PID` is our
/// pid, else 0 (the variables were meant for another process).
fn passed_count(pid: Option<&str>, fds: Option<&str>, our_pid: u32) -> usize {
    let ours = pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(our_pid);
    match (ours, fds.and_then(|n| n.trim().parse::<usize>().ok())) {
        // Bounded: a bogus count must not make the master take over fds it never got.
        (true, Some(n)) => n.min(4096),
        _ => 0,
    }
}

/// Takes the sockets systemd passed, once, at start. Fds that are not open are skipped.
pub(crate) fn take_passed() -> Vec<Passed> {
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
        if std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err() {
            log::warn!("LISTEN_FDS: fd {fd} is not open; skipped");
            continue;
        }
        #[allow(unsafe_code)]
        // SAFETY: LISTEN_PID is this process, so systemd passed fds 3..3+LISTEN_FDS to it
        // (sd_listen_fds(3)); fd is open (checked just above), and nothing else in the master
        // owns these numbers: they were open before main, so no later open reused them, and
        // this runs once, at start. The OwnedFd is the only owner from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        passed.push(Passed { fd, name });
    }
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fds_for_our_pid_count() {
        assert_eq!(passed_count(Some("42"), Some("2"), 42), 2);
        assert_eq!(passed_count(Some(" 42\n"), Some("1"), 42), 1);
        assert_eq!(passed_count(Some("41"), Some("2"), 42), 0);
        assert_eq!(passed_count(None, Some("2"), 42), 0);
        assert_eq!(passed_count(Some("42"), None, 42), 0);
        assert_eq!(passed_count(Some("42"), Some("x"), 42), 0);
        assert_eq!(passed_count(Some("42"), Some("99999"), 42), 4096);
    }

    #[test]
    fn a_relative_unix_path_matches_its_absolute_form() {
        let cwd = std::env::current_dir().expect("cwd");
        assert!(same_path(Path::new("run/s.sock"), &cwd.join("run/s.sock")));
        assert!(same_path(
            Path::new("/run/s.sock"),
            Path::new("/run/s.sock")
        ));
        assert!(!same_path(Path::new("run/s.sock"), &cwd.join("run/t.sock")));
    }

    #[test]
    fn a_passed_socket_matches_its_address_and_type_only() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let p = Passed {
            fd: tcp.into(),
            name: Some("web".into()),
        };
        assert!(p.matches(&Address::Inet(addr)));
        let mut other = addr;
        other.set_port(addr.port().wrapping_add(1));
        assert!(!p.matches(&Address::Inet(other)));
        assert!(!p.matches(&Address::Unix("/tmp/x".into())));
        assert_eq!(p.describe().split_once(' ').map(|x| x.0), Some("fd"));
        assert!(p.describe().ends_with("\"web\""));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let uaddr = udp.local_addr().expect("addr");
        let p = Passed {
            fd: udp.into(),
            name: None,
        };
        assert!(
            !p.matches(&Address::Inet(uaddr)),
            "a datagram socket is no listener"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let unix = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let p = Passed {
            fd: unix.into(),
            name: None,
        };
        assert!(p.matches(&Address::Unix(path.clone())));
        assert!(!p.matches(&Address::Unix(dir.path().join("t"))));
        assert!(!p.matches(&Address::Fifo(path)));
    }
}
