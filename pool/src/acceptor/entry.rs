//! One listener of the acceptor: its batched `accept4` loop, the error policy, and the
//! switch of its epoll interest (paused after `EMFILE` and the like, or at the
//! connection limit).

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{SockFlag, accept4};

use super::{BATCH, Batch, Entry, PAUSE, WARN_EVERY, listener_fd};
use crate::board::{self, Board};
use crate::gate::ConnGate;
use crate::listener::{Listener, Stream};
use crate::reactor::Reactor;

/// Whether a connection waits on `listener` (a zero-timeout `poll`).
fn readable(listener: &Listener) -> bool {
    let mut fds = [PollFd::new(listener_fd(listener), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

impl Entry {
    pub(super) fn deliver(&mut self, stream: Stream) {
        let callback = &mut self.callback;
        if catch_unwind(AssertUnwindSafe(|| callback(stream))).is_err() {
            log::error!("acceptor: accept callback for {} panicked", self.label);
        }
    }

    /// Accepts up to [`BATCH`] connections, handing each to the callback. Returns
    /// [`Batch::Full`] when `gate` reached its limit (the caller then pauses every listener).
    /// With `board` (the gate's, when the process may use several CPUs), a connection a less
    /// loaded sibling process should take is left to it first ([`Entry::leave_to_sibling`]).
    pub(super) fn accept_batch(
        &mut self,
        reactor: &Reactor,
        key: usize,
        stop: &AtomicBool,
        gate: Option<&ConnGate>,
        board: Option<&Board>,
    ) -> Batch {
        let board = gate.zip(board);
        for _ in 0..BATCH {
            // Stop means at once: after a reload not one more connection for this generation.
            if stop.load(Ordering::SeqCst) {
                return Batch::Drained;
            }
            if let Some((gate, board)) = board
                && !self.leave_to_sibling(gate, board, stop)
            {
                return Batch::Drained;
            }
            let accepted = match &self.listener {
                Some(Listener::Tcp(l)) => {
                    accept4(l, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK).map(|fd| {
                        let s = std::net::TcpStream::from(fd);
                        let _ = s.set_nodelay(true);
                        Stream::Tcp(s)
                    })
                }
                Some(Listener::Unix(l)) => {
                    accept4(l, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
                        .map(|fd| Stream::Unix(std::os::unix::net::UnixStream::from(fd)))
                }
                Some(Listener::Fifo(_)) | None => return Batch::Drained,
            };
            match accepted {
                Ok(stream) => {
                    self.deliver(stream);
                    // The callback counted it (see `ConnGate`): not one more past the limit.
                    if gate.is_some_and(ConnGate::at_limit) {
                        return Batch::Full;
                    }
                }
                Err(Errno::EAGAIN) => return Batch::Drained,
                Err(
                    Errno::EINTR
                    | Errno::ECONNABORTED
                    | Errno::EPROTO
                    | Errno::EPERM
                    | Errno::ENETDOWN
                    | Errno::ENOPROTOOPT
                    | Errno::EHOSTDOWN
                    | Errno::ENONET
                    | Errno::EHOSTUNREACH
                    | Errno::EOPNOTSUPP
                    | Errno::ENETUNREACH,
                ) => continue,
                Err(e) => {
                    self.pause(reactor, key, e);
                    return Batch::Drained;
                }
            }
        }
        Batch::Drained
    }

    /// While the board says a less loaded sibling should take the next connection and one is
    /// waiting, yields and then sleeps (the sibling's acceptor was woken by the same
    /// connection), for [`board::DEFER_FOR`] (checked each round). `false`: nothing waits any
    /// more (the sibling took it, nothing was there) or a stop came; `true`: accept, the rule
    /// no longer defers or the time is up.
    fn leave_to_sibling(&self, gate: &ConnGate, board: &Board, stop: &AtomicBool) -> bool {
        // The rule cannot defer at this count: no clock read, no look at the board.
        if gate.active() <= board::SLACK as usize {
            return true;
        }
        let Some(listener) = &self.listener else {
            return false;
        };
        // Set while deferring: since when, and the slots waited for.
        let mut deferral: Option<(Instant, u64)> = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            let ended = || {
                if let Some((_, waited)) = deferral {
                    board.deferral_ended(waited, Instant::now());
                }
            };
            // The siblings the rule defers to now (none: it does not defer).
            let waiting_for = board.waited_for(gate.active());
            if waiting_for == 0 {
                ended();
                return true;
            }
            if !readable(listener) {
                ended();
                return false;
            }
            let now = Instant::now();
            match deferral {
                None if board.quiet(now) => return true,
                None => {
                    deferral = Some((now, waiting_for));
                    board.count_deferral();
                }
                Some((t, waited)) if now.duration_since(t) >= board.defer_for() => {
                    board.deferral_ended(waited, now);
                    return true;
                }
                Some(_) => {}
            }
            // Yield first (an awake sibling takes it within microseconds), then sleep (see
            // `board::DEFER_YIELD`).
            if deferral.is_some_and(|(t, _)| now.duration_since(t) < board::DEFER_YIELD) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(board::DEFER_TURN);
            }
        }
    }

    /// Stops polling this listener for [`PAUSE`] after an accept error it cannot skip.
    fn pause(&mut self, reactor: &Reactor, key: usize, err: Errno) {
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warn = Some(now);
            let what = match err {
                Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM => {
                    "out of resources"
                }
                _ => "unexpected error",
            };
            log::warn!(
                "accept listener={} error=\"{}\" ({what}); pausing it for {} ms",
                self.label,
                io::Error::from(err),
                PAUSE.as_millis()
            );
        }
        self.listen(reactor, key, false);
        self.paused_until = Some(now + PAUSE);
    }

    /// Switches the epoll interest in this listener on or off (level-triggered: a
    /// listener switched on with connections waiting is reported at once).
    pub(super) fn listen(&self, reactor: &Reactor, key: usize, on: bool) {
        if let Some(l) = &self.listener
            && !matches!(l, Listener::Fifo(_))
            && let Err(e) = reactor.listen_level(listener_fd(l), key as u64, on)
        {
            let what = if on { "resume" } else { "pause" };
            log::error!("acceptor: {what} {}: {e}", self.label);
        }
    }
}
