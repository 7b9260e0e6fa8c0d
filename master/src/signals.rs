//! Signals the master acts on, delivered through signal-hook's self-pipe into its poll loop.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// Which signals arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) reload: bool,
    pub(crate) stop: bool,
}

/// Flags set by the handlers plus a pipe that wakes the poll loop.
pub(crate) struct Signals {
    wake: UnixStream,
    reload: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Signals {
    /// Installs handlers for SIGCHLD, SIGHUP, SIGTERM and SIGINT.
    pub(crate) fn install() -> io::Result<Signals> {
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let signals = Signals {
            wake,
            reload: Arc::default(),
            stop: Arc::default(),
        };
        for (sig, flag) in [
            (SIGHUP, &signals.reload),
            (SIGTERM, &signals.stop),
            (SIGINT, &signals.stop),
        ] {
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
        Pending {
            reload: self.reload.swap(false, Ordering::SeqCst),
            stop: self.stop.swap(false, Ordering::SeqCst),
        }
    }
}
