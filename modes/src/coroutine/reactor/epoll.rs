//! A worker's readiness source: a raw epoll instance (edge-triggered, each fd registered once
//! for `IN | OUT | RDHUP`) with an eventfd for wake-ups, and the worker's table of sources.
//!
//! Why not `polling`: its `wait` costs four syscalls besides `epoll_wait` (timerfd arm and
//! re-arm, eventfd read and re-arm) and it does not report `EPOLLRDHUP`. nix's epoll wrapper is
//! safe (it takes `AsFd`), so this needs no `unsafe`. The waker eventfd is edge-triggered and
//! never read: every write is a new edge. Timers are the worker's own (`timer.rs`), passed to
//! `epoll_wait` as its timeout.
//!
//! Sources: an event carries a key into the worker's thread-local table of `IoState`s. A
//! coroutine registers its socket on the worker it runs on ([`register`]), on its first
//! operation there; the socket's owner deletes it from the epoll before closing it and sends
//! the key back to the worker (`WorkerShared::dereg`), which then forgets it ([`forget`]).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::IoState;
use crate::coroutine::sched;

/// The epoll data value of the waker.
const WAKER_KEY: u64 = u64::MAX;

/// Events fetched per `epoll_wait`.
pub(crate) const EVENTS: usize = 256;

/// Flags that make a source readable (data, EOF, reset, error).
pub(super) const READ_FLAGS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR)
    .union(EpollFlags::EPOLLPRI);
/// Flags that make a source writable (space, reset, error).
pub(super) const WRITE_FLAGS: EpollFlags = EpollFlags::EPOLLOUT
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR);
/// Flags saying the peer closed its side or the connection failed (sticky).
pub(super) const HUP_FLAGS: EpollFlags = EpollFlags::EPOLLRDHUP
    .union(EpollFlags::EPOLLHUP)
    .union(EpollFlags::EPOLLERR);

/// One worker's epoll instance and waker; shared with other threads (they notify, and delete
/// sources they drop).
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: Epoll,
    waker: EventFd,
}

impl Poller {
    /// A new epoll instance with its waker registered.
    pub(crate) fn new() -> io::Result<Poller> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let waker = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, WAKER_KEY);
        epoll.add(waker.as_fd(), ev)?;
        Ok(Poller { epoll, waker })
    }

    /// Wakes the thread blocked in (or about to enter) [`Poller::wait`].
    pub(crate) fn notify(&self) -> io::Result<()> {
        match self.waker.write(1) {
            Ok(_) => Ok(()),
            Err(Errno::EAGAIN) => {
                // The counter is saturated (after ~2^64 writes): drain it and signal again.
                let _ = self.waker.read();
                self.waker.write(1).map(drop).map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `fd` (before it is closed, so no stale event can name its key).
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds; `None` = forever) and hands
    /// every source event to its `IoState`. Returns the number of events (wake-ups included).
    pub(crate) fn wait(
        &self,
        events: &mut [EpollEvent],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) if t.is_zero() => EpollTimeout::ZERO,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        let n = match self.epoll.wait(events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        SOURCES.with_borrow(|s| {
            for ev in &events[..n] {
                let key = ev.data();
                if key == WAKER_KEY {
                    continue;
                }
                if let Some(Some(io)) = s.slots.get(key as usize) {
                    io.on_event(ev.events());
                }
            }
        });
        Ok(n)
    }
}

/// The I/O sources registered with this worker thread's epoll, by key.
struct Sources {
    slots: Vec<Option<Arc<IoState>>>,
    free: Vec<usize>,
}

thread_local! {
    static SOURCES: RefCell<Sources> = const {
        RefCell::new(Sources { slots: Vec::new(), free: Vec::new() })
    };
}

/// Registers `src` (whose fd is `fd`) with the epoll of the worker running on this thread,
/// edge-triggered for both directions. A source registered concurrently by another worker
/// stays there (ours is undone).
///
/// Must be called on a worker thread (inside a coroutine).
pub(super) fn register(src: &Arc<IoState>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let Some(worker) = sched::current_worker() else {
        return Err(io::Error::other(
            "coroutine I/O registration outside a worker",
        ));
    };
    SOURCES.with_borrow_mut(|s| {
        let key = match s.free.pop() {
            Some(k) => k,
            None => {
                s.slots.push(None);
                s.slots.len() - 1
            }
        };
        let flags = READ_FLAGS | WRITE_FLAGS | EpollFlags::EPOLLET;
        if let Err(e) = worker
            .poller
            .epoll
            .add(fd, EpollEvent::new(flags, key as u64))
        {
            s.free.push(key);
            return Err(e.into());
        }
        let poller = &worker.poller;
        if src.set_registration(worker.clone(), key) {
            s.slots[key] = Some(src.clone());
        } else {
            if let Err(e) = poller.delete(fd) {
                log::debug!("coroutine epoll delete failed: {e}");
            }
            s.free.push(key);
        }
        Ok(())
    })
}

/// Forgets a source whose owner deleted it from this worker's epoll (its key may be reused).
pub(crate) fn forget(key: usize) {
    SOURCES.with_borrow_mut(|s| {
        if let Some(slot) = s.slots.get_mut(key)
            && slot.take().is_some()
        {
            s.free.push(key);
        }
    });
}

/// Forgets every source (worker shutdown).
pub(crate) fn forget_all() {
    let old = SOURCES.with_borrow_mut(|s| {
        s.free.clear();
        std::mem::take(&mut s.slots)
    });
    // Dropped outside the borrow: a last `IoState` reference going away runs no user code,
    // but keep the table unborrowed anyway.
    drop(old);
}
