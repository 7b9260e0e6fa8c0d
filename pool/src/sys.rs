//! The crate's only `unsafe` code: registering listener fds with a `polling::Poller`.
//!
//! Contract: an fd registered through [`poller_add_level`] stays open until it has been
//! deleted from that poller ([`polling::Poller::delete`]); the acceptor, the only caller,
//! deletes every listener before dropping it (see `acceptor::Thread::close_all`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use polling::{Event, PollMode, Poller};

/// Registers `fd` for readability in level-triggered mode under `key`.
///
/// The caller must delete `fd` from `poller` before closing it (module contract).
pub(crate) fn poller_add_level(poller: &Poller, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
    // SAFETY: `polling` requires that the source is deleted from the poller before it is
    // closed. The only caller (the acceptor thread) owns the listener whose fd this is and
    // deletes it from the poller in `close_all` before dropping it, and never drops a
    // listener anywhere else while the poller exists.
    unsafe { poller.add_with_mode(fd.as_raw_fd(), Event::readable(key), PollMode::Level) }
}
