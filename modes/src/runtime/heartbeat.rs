//! The server's end of the master's heartbeat memfd (`ZM_HEARTBEAT_FD`, SPEC §13).
//!
//! Design notes: a zmaster master that runs a service with a §13 server limit stages one small
//! memfd per child after the listeners and names it in `ZM_HEARTBEAT_FD`. Bytes 0..8 hold the
//! CLOCK_MONOTONIC nanoseconds of the server's last beat (native order), byte 8 the reason it
//! retired (0 none, 1 max-use, 2 idle, 3 memory, 4 hang; the master's
//! `supervisor::heartbeat` reads them). The server beats only when its own hang timeout is
//! set (the master watches a child only once it beat, so a server that never beats — a LIB-ZC
//! one, or ours without a timeout — is never killed for silence), from a small thread of its
//! own, `zm-heartbeat`, every min(200 ms, timeout / 8), for the process's whole life: the main
//! thread may be busy for any time in `stop_accepting` or a `before_softstop` hook, and a
//! healthy draining server must not look hung. A whole frozen process (SIGSTOP, a deadlock of
//! the allocator, swapping) stops that thread too and the master SIGKILLs it; a worker or
//! scheduler thread stuck in a handler is caught in-process by the per-thread watchdog
//! (`lifecycle`), which retires the server. The master checks every timeout / 4 (at most
//! 400 ms) and kills only on two stale checks an interval apart: at least two beats fit in.

use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::uio::pwrite;

use super::super::sys;

/// The variable the master names the fd in.
pub(crate) const ENV: &str = "ZM_HEARTBEAT_FD";
/// Where the retire reason byte is.
const REASON_AT: i64 = 8;
/// The longest time between two beats, whatever the timeout (the master checks at least every
/// 400 ms: two beats fit in one of its intervals).
const MAX_EVERY: Duration = Duration::from_millis(200);
/// The shortest (a tiny timeout must not make the thread spin).
const MIN_EVERY: Duration = Duration::from_millis(10);

/// The memfd's size, as the master's `supervisor::heartbeat` makes it.
const SIZE: i64 = 64;

/// Whether `fd` is a heartbeat memfd as the master stages it, checked without `/proc` (a
/// chroot may have none): a regular file of the master's size that has a seal set — only a
/// memfd (or shmem) supports `F_GET_SEALS`; a file, pipe or socket fails it.
#[cfg(test)]
pub(crate) fn is_heartbeat_memfd(fd: BorrowedFd<'_>) -> bool {
    is_master_memfd(fd, SIZE)
}

/// Whether `fd` is a memfd of `size` bytes as the master stages them (heartbeat, board),
/// checked without `/proc`: a regular file of that size that has a seal set — only a memfd
/// (or shmem) supports `F_GET_SEALS`; a file, pipe or socket fails it.
pub(crate) fn is_master_memfd(fd: BorrowedFd<'_>, size: i64) -> bool {
    let Ok(stat) = nix::sys::stat::fstat(fd) else {
        return false;
    };
    let regular = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
    regular
        && stat.st_size == size
        && nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GET_SEALS).is_ok()
}

/// Adopts inherited fd `fd` when it is a memfd of `size` bytes as the master stages them
/// ([`is_master_memfd`]): adopted first (an inherited fd only: see `sys`), so it can be looked
/// at safely; `Ok(None)`, the fd left open as it came (not ours to close), when it is
/// something else.
///
/// # Errors
/// The fd cannot be adopted (`sys::adopt_inherited_fd`).
pub(crate) fn adopt_master_memfd(fd: RawFd, size: i64) -> std::io::Result<Option<OwnedFd>> {
    let owned = sys::adopt_inherited_fd(fd)?;
    if !is_master_memfd(owned.as_fd(), size) {
        let _ = owned.into_raw_fd();
        return Ok(None);
    }
    Ok(Some(owned))
}

/// The reason byte for a retire reason of `lifecycle::Watch::check`; 0 for none known.
pub(crate) fn reason_code(reason: &str) -> u8 {
    match reason {
        "max-use" => 1,
        "idle" => 2,
        "memory" => 3,
        "hang" => 4,
        _ => 0,
    }
}

/// How often to beat for `hang_timeout`; `None` (never beat) when it is zero.
pub(crate) fn beat_every(hang_timeout: Duration) -> Option<Duration> {
    (!hang_timeout.is_zero()).then(|| (hang_timeout / 8).clamp(MIN_EVERY, MAX_EVERY))
}

/// The adopted memfd and how often to beat into it.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    fd: OwnedFd,
    every: Option<Duration>,
}

impl Heartbeat {
    /// The fd `ZM_HEARTBEAT_FD` names, adopted (close-on-exec from now on), and the variable
    /// removed so nothing this server execs sees a stale number. `Ok(None)` when it is not set.
    ///
    /// # Errors
    /// The value is no fd number, or that fd is not an inherited heartbeat memfd (checked
    /// without `/proc`: [`is_heartbeat_memfd`]):
    /// the message says which (the server then runs unwatched).
    pub(crate) fn from_env(hang_timeout: Duration) -> Result<Option<Heartbeat>, String> {
        let Some(value) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        sys::remove_env_if_single_threaded(ENV);
        let fd: RawFd = value
            .to_str()
            .and_then(|v| v.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{ENV}={value:?} is not an fd number"))?;
        let owned = adopt_master_memfd(fd, SIZE).map_err(|e| format!("{ENV}={fd}: {e}"))?;
        let fd = owned.ok_or_else(|| format!("{ENV}={fd} is not the master's heartbeat memfd"))?;
        Ok(Some(Heartbeat::new(fd, hang_timeout)))
    }

    pub(crate) fn new(fd: OwnedFd, hang_timeout: Duration) -> Heartbeat {
        Heartbeat {
            fd,
            every: beat_every(hang_timeout),
        }
    }

    /// The same memfd, beating for `hang_timeout` (known once the config is read).
    pub(crate) fn with_timeout(self, hang_timeout: Duration) -> Heartbeat {
        Heartbeat::new(self.fd, hang_timeout)
    }

    /// How often it must beat; `None` when it never does.
    #[cfg(test)]
    pub(crate) fn every(&self) -> Option<Duration> {
        self.every
    }

    /// Stamps now into the memfd, if this server beats at all.
    pub(crate) fn beat(&self) {
        if self.every.is_some() {
            let now = sys::monotonic_ns().to_ne_bytes();
            if let Err(e) = pwrite(self.fd.as_fd(), &now, 0) {
                log::warn!("cannot write the heartbeat: {e}");
            }
        }
    }

    /// Starts the `zm-heartbeat` thread, which beats every [`every`](Heartbeat::every) for the
    /// rest of the process's life; nothing when this server never beats.
    ///
    /// # Errors
    /// The thread cannot be started (the server then runs unwatched: it never beats).
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let Some(every) = self.every else {
            return Ok(());
        };
        let heartbeat = Arc::clone(self);
        std::thread::Builder::new()
            .name("zm-heartbeat".into())
            .spawn(move || {
                loop {
                    heartbeat.beat();
                    std::thread::sleep(every);
                }
            })?;
        Ok(())
    }

    /// Leaves the retire `reason` for the master to read (`""` clears it).
    pub(crate) fn set_reason(&self, reason: &str) {
        if let Err(e) = pwrite(self.fd.as_fd(), &[reason_code(reason)], REASON_AT) {
            log::warn!("cannot write the retire reason: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::memfd::{MFdFlags, memfd_create};
    use nix::sys::uio::pread;

    #[test]
    fn beats_and_reasons_land_where_the_master_reads_them() {
        let memfd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&memfd, 64).unwrap();
        let reader = memfd.try_clone().unwrap();
        let h = Heartbeat::new(memfd, Duration::from_millis(400));
        assert_eq!(h.every(), Some(Duration::from_millis(50)));
        let before = sys::monotonic_ns();
        h.beat();
        let mut buf = [0u8; 8];
        assert_eq!(pread(&reader, &mut buf, 0), Ok(8));
        let stamp = u64::from_ne_bytes(buf);
        assert!(stamp >= before && stamp <= sys::monotonic_ns(), "{stamp}");
        let reasons = [
            ("max-use", 1),
            ("idle", 2),
            ("memory", 3),
            ("hang", 4),
            ("", 0),
        ];
        for (reason, code) in reasons.into_iter().chain([("other", 0)]) {
            h.set_reason(reason);
            let mut byte = [9u8; 1];
            assert_eq!(pread(&reader, &mut byte, REASON_AT), Ok(1));
            assert_eq!(byte[0], code, "{reason}");
        }
    }

    #[test]
    fn a_server_without_a_hang_timeout_never_beats() {
        let memfd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&memfd, 64).unwrap();
        let reader = memfd.try_clone().unwrap();
        let h = Heartbeat::new(memfd, Duration::ZERO);
        assert_eq!(h.every(), None);
        h.beat();
        let mut buf = [1u8; 8];
        assert_eq!(pread(&reader, &mut buf, 0), Ok(8));
        assert_eq!(buf, [0; 8], "the master never watches it");
    }

    #[test]
    fn the_beat_interval_is_an_eighth_of_the_timeout_within_10ms_and_200ms() {
        let ms = Duration::from_millis;
        assert_eq!(beat_every(Duration::ZERO), None);
        assert_eq!(beat_every(ms(800)), Some(ms(100)));
        assert_eq!(beat_every(ms(60_000)), Some(ms(200)));
        assert_eq!(beat_every(ms(4)), Some(ms(10)));
        assert_eq!(beat_every(ms(1608)), Some(ms(200)));
        assert_eq!(beat_every(ms(1592)), Some(ms(199)));
    }

    #[test]
    fn the_memfd_is_recognised_without_proc() {
        let memfd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&memfd, 64).unwrap();
        assert!(is_heartbeat_memfd(memfd.as_fd()));
        // Another name is fine (nothing reads it): what counts is what the fd is.
        let sealable = memfd_create(c"other", MFdFlags::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&sealable, 64).unwrap();
        assert!(is_heartbeat_memfd(sealable.as_fd()));
        let small = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&small, 8).unwrap();
        assert!(!is_heartbeat_memfd(small.as_fd()), "not the master's size");
        let file = tempfile::tempfile().unwrap();
        file.set_len(64).unwrap();
        assert!(
            !is_heartbeat_memfd(file.as_fd()),
            "a plain file has no seals"
        );
        let (r, w) = nix::unistd::pipe().unwrap();
        assert!(!is_heartbeat_memfd(r.as_fd()), "a pipe");
        assert!(!is_heartbeat_memfd(w.as_fd()));
        let dir = std::fs::File::open("/").unwrap();
        assert!(!is_heartbeat_memfd(dir.as_fd()), "a directory");
    }

    #[test]
    fn the_heartbeat_thread_beats_on_its_own() {
        let memfd = memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&memfd, 64).unwrap();
        let reader = memfd.try_clone().unwrap();
        let read = || {
            let mut buf = [0u8; 8];
            assert_eq!(pread(&reader, &mut buf, 0), Ok(8));
            u64::from_ne_bytes(buf)
        };
        let h = Arc::new(Heartbeat::new(memfd, Duration::from_millis(100)));
        h.start().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let first = loop {
            match read() {
                0 => assert!(std::time::Instant::now() < deadline, "no first beat"),
                beat => break beat,
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        while read() == first {
            assert!(std::time::Instant::now() < deadline, "no second beat");
            std::thread::sleep(Duration::from_millis(5));
        }
        let silent = Arc::new(Heartbeat::new(
            memfd_create(c"zmaster-heartbeat", MFdFlags::MFD_CLOEXEC).unwrap(),
            Duration::ZERO,
        ));
        silent.start().unwrap();
    }
}
