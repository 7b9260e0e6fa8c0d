//! The epoll readiness primitive of the aio workers and the acceptor, shared with the
//! coroutine mode's reactor: a raw epoll instance (connections edge-triggered, no re-arming;
//! listeners level-triggered) and an eventfd waker for cross-thread submissions.
//!
//! Design notes: `polling::Poller::wait` costs four syscalls besides `epoll_wait` on every
//! call (timerfd arm + re-arm, eventfd read + re-arm), which the hot loop of a worker cannot
//! afford (nor the acceptor: four extra syscalls per accepted connection when they arrive
//! one at a time), so both use nix's safe epoll wrapper directly (as mio does). Each connection is
//! registered once for `IN | OUT | RDHUP` with `EPOLLET`; the connection keeps its own
//! readable/writable flags. The waker eventfd is also edge-triggered and never read: each
//! write is a new edge. [`Waker::wake`] writes only when the owner announced that it is about
//! to block ([`Waker::sleeping`]): a worker that is awake (running callbacks, or polling with
//! a zero timeout) drains its inbox at the end of its turn anyway, so handing it work costs
//! no syscall and no spurious wake-up later.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The epoll data value of the waker.
pub const WAKER_KEY: u64 = u64::MAX;

/// Readiness flags that make a connection readable (data, EOF, reset, error).
pub const READ_FLAGS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR)
    .union(EpollFlags::EPOLLPRI);
/// Flags saying the peer closed or the connection failed (stay true once seen).
pub const HUP_FLAGS: EpollFlags = EpollFlags::EPOLLRDHUP
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR);
/// Readiness flags that make a connection writable (space, reset, error).
pub const WRITE_FLAGS: EpollFlags = EpollFlags::EPOLLOUT
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR);

/// How a listener is registered: level-triggered readability, **not** `EPOLLEXCLUSIVE`.
///
/// Exclusive wake-ups (one of the acceptors blocked on a listener shared by several
/// processes) saved ~0.5 context switches per connection with two processes, but the one
/// acceptor woken may be unable to accept: stopping after a reload (it deletes the listener
/// without accepting), or paused after `EMFILE`. The kernel wakes nobody else for that
/// connection, so it would wait in the backlog until the next one arrives — a reload must not
/// delay a connection. Every blocked acceptor is woken; all but one find `EAGAIN`.
/// (`pool/tests/listener_wakeups.rs`.)
pub const LISTEN_FLAGS: EpollFlags = EpollFlags::EPOLLIN;

/// The epoll instance of one worker.
#[derive(Debug)]
pub struct Reactor {
    epoll: Epoll,
}

/// Wakes a worker blocked in [`Reactor::wait`]; shared with other threads.
#[derive(Debug)]
pub struct Waker {
    fd: EventFd,
    /// The owner is blocking (or about to block) in [`Reactor::wait`]; cleared by the first
    /// [`Waker::wake`] after it, which then writes the eventfd.
    asleep: AtomicBool,
}

impl Reactor {
    /// A new epoll instance with `waker` registered.
    ///
    /// # Errors
    /// `epoll_create1` or `epoll_ctl` failed.
    pub fn new(waker: &Waker) -> io::Result<Reactor> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, WAKER_KEY);
        epoll.add(waker.fd.as_fd(), ev)?;
        Ok(Reactor { epoll })
    }

    /// Registers a connection for edge-triggered read and write readiness under `key`.
    ///
    /// # Errors
    /// `epoll_ctl` failed.
    pub fn add(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        let flags = READ_FLAGS | WRITE_FLAGS | EpollFlags::EPOLLET;
        Ok(self.epoll.add(fd, EpollEvent::new(flags, key))?)
    }

    /// Registers a listener for level-triggered readability under `key` (the acceptor: a
    /// listener it did not drain is simply reported again, no re-arm needed).
    ///
    /// # Errors
    /// `epoll_ctl` failed.
    pub fn add_level(&self, fd: impl AsFd, key: u64) -> io::Result<()> {
        Ok(self.epoll.add(fd, EpollEvent::new(LISTEN_FLAGS, key))?)
    }

    /// Switches a level-triggered registration ([`add_level`](Self::add_level)) on or off.
    /// Off deletes it from the epoll set: a modify to an empty mask would still report
    /// `EPOLLHUP`/`EPOLLERR` (the kernel always adds them), and a listener another holder of
    /// the shared fd shut down reports HUP forever: the acceptor would spin. On adds it back
    /// (or keeps it if it is there).
    ///
    /// # Errors
    /// `epoll_ctl` failed.
    pub fn listen_level(&self, fd: impl AsFd, key: u64, on: bool) -> io::Result<()> {
        let result = if on {
            match self.epoll.add(&fd, EpollEvent::new(LISTEN_FLAGS, key)) {
                Err(nix::errno::Errno::EEXIST) => self
                    .epoll
                    .modify(&fd, &mut EpollEvent::new(LISTEN_FLAGS, key)),
                other => other,
            }
        } else {
            match self.epoll.delete(&fd) {
                Err(nix::errno::Errno::ENOENT) => Ok(()),
                other => other,
            }
        };
        Ok(result?)
    }

    /// Removes a connection (before it is closed, so no stale event can name it).
    ///
    /// # Errors
    /// `epoll_ctl` failed.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits for events up to `timeout` (rounded up to whole milliseconds; `None` = forever).
    /// Returns how many entries of `events` were filled; 0 on timeout or `EINTR`.
    ///
    /// # Errors
    /// `epoll_wait` failed.
    pub fn wait(&self, events: &mut [EpollEvent], timeout: Option<Duration>) -> io::Result<usize> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(EpollTimeout::MAX)
            }
        };
        match self.epoll.wait(events, timeout) {
            Ok(n) => Ok(n),
            Err(Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl Waker {
    /// A new, unsignalled waker whose owner counts as asleep until its first
    /// [`Waker::awake`]: a thread that has not reached its loop yet is not awake for
    /// [`Waker::is_asleep`] (the first [`Waker::wake`] then writes the eventfd, which the
    /// owner's first wait just reports).
    ///
    /// # Errors
    /// `eventfd` failed.
    pub fn new() -> io::Result<Waker> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Waker {
            fd,
            asleep: AtomicBool::new(true),
        })
    }

    /// Call after publishing work for the owner (e.g. a channel send): wakes it if it
    /// announced sleep ([`Waker::sleeping`]) and nobody woke it since; otherwise it is awake
    /// and sees the work before it blocks again (no syscall).
    pub fn wake(&self) {
        // Pairs with the fence in `sleeping`: either the owner's re-check sees the work
        // published before this, or this sees its announcement.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) && self.asleep.swap(false, Ordering::SeqCst) {
            let _ = self.signal();
        }
    }

    /// The owner is about to block in [`Reactor::wait`]: call this first, then check for
    /// published work once more (and do not block if there is some), then wait, then call
    /// [`Waker::awake`].
    pub fn sleeping(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The owner returned from [`Reactor::wait`]: later work needs no wake-up until the next
    /// [`Waker::sleeping`].
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::Relaxed);
    }

    /// Whether the owner announced that it blocks ([`Waker::sleeping`]) and no wake-up has
    /// been sent since: a hint (it may change at once), for preferring an awake thread.
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::Relaxed)
    }

    /// Wakes the worker now, whether or not a wake-up is pending.
    ///
    /// # Errors
    /// The eventfd write failed (other than a saturated counter, which is handled).
    pub fn signal(&self) -> io::Result<()> {
        match self.fd.write(1) {
            Ok(_) => Ok(()),
            Err(Errno::EAGAIN) => {
                // The counter is saturated (after ~2^64 writes): drain it and signal again.
                let _ = self.fd.read();
                self.fd.write(1).map(drop).map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        }
    }
}
