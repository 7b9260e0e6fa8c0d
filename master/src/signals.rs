//! Signals the master acts on, delivered through signal-hook's self-pipe into its poll loop.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
};

/// Which signals arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// SIGHUP.
    pub(crate) reload: bool,
    /// SIGTERM or SIGINT: fast stop.
    pub(crate) stop: bool,
    /// SIGQUIT: graceful stop.
    pub(crate) quit: bool,
    /// SIGUSR1: reopen log files.
    pub(crate) reopen: bool,
    /// SIGTTIN: one process more per service.
    pub(crate) more: bool,
    /// SIGTTOU: one process fewer per service.
    pub(crate) fewer: bool,
    /// SIGUSR2: binary upgrade (SPEC §14).
    pub(crate) upgrade: bool,
}

/// Flags set by the handlers plus a pipe that wakes the poll loop.
pub(crate) struct Signals {
    wake: UnixStream,
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    more: Arc<AtomicBool>,
    fewer: Arc<AtomicBool>,
    upgrade: Arc<AtomicBool>,
}

impl Signals {
    /// Installs handlers for SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2,
    /// SIGTTIN and SIGTTOU.
    pub(crate) fn install() -> io::Result<Signals> {
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let signals = Signals {
            wake,
            reload: Arc::default(),
            stop: Arc::default(),
            quit: Arc::default(),
            reopen: Arc::default(),
            more: Arc::default(),
            fewer: Arc::default(),
            upgrade: Arc::default(),
        };
        let acted_on = [
            (SIGHUP, &signals.reload),
            (SIGTERM, &signals.stop),
            (SIGINT, &signals.stop),
            (SIGQUIT, &signals.quit),
            (SIGUSR1, &signals.reopen),
            (SIGUSR2, &signals.upgrade),
            (SIGTTIN, &signals.more),
            (SIGTTOU, &signals.fewer),
        ];
        for (sig, flag) in acted_on {
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        // SIGCHLD only wakes the loop, which reaps on every turn.
        signal_hook::low_level::pipe::register(SIGCHLD, notify)?;
        Ok(signals)
    }

    /// The fd to poll for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Drains the wake-up pipe and returns (and clears) the pending signals.
    pub(crate) fn take(&self) -> Pending {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        let take = |flag: &AtomicBool| flag.swap(false, Ordering::SeqCst);
        Pending {
            reload: take(&self.reload),
            stop: take(&self.stop),
            quit: take(&self.quit),
            reopen: take(&self.reopen),
            more: take(&self.more),
            fewer: take(&self.fewer),
            upgrade: take(&self.upgrade),
        }
    }
}
