//! A worker's readiness source: a raw epoll instance (edge-triggered, each fd registered once
//! for `IN | OUT | RDHUP`) with an eventfd for wake-ups, and the worker's table of sources.
//!
//! The epoll instance and eventfd waker are the aio pool's (`zmaster_pool::reactor`). Why not
//! `polling`: its `wait` costs four syscalls besides `epoll_wait` (timerfd arm and re-arm,
//! eventfd read and re-arm) and it does not report `EPOLLRDHUP`. Timers are the worker's own
//! (`timer.rs`), passed to `epoll_wait` as its timeout.
//!
//! Sources: an event carries a key into the worker's thread-local table of `IoState`s. A
//! coroutine registers its socket on the worker it runs on ([`register`]), on its first
//! operation there; the socket's owner deletes it from the epoll before closing it and sends
//! the key back to the worker (`WorkerShared::dereg`), which then forgets it ([`forget`]).

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::epoll::EpollEvent;
pub(super) use zmaster_pool::reactor::{HUP_FLAGS, READ_FLAGS, WRITE_FLAGS};
use zmaster_pool::reactor::{Reactor, WAKER_KEY, Waker};

use super::IoState;
use crate::coroutine::sched;

/// Events fetched per `epoll_wait`.
pub(crate) const EVENTS: usize = 256;

/// One worker's epoll instance and waker (the aio pool's primitive); shared with other threads
/// (they notify, and delete sources they drop).
#[derive(Debug)]
pub(crate) struct Poller {
    reactor: Reactor,
    waker: Waker,
}

impl Poller {
    /// A new epoll instance with its waker registered.
    pub(crate) fn new() -> io::Result<Poller> {
        let waker = Waker::new()?;
        let reactor = Reactor::new(&waker)?;
        Ok(Poller { reactor, waker })
    }

    /// Wakes the thread blocked in (or about to enter) [`Poller::wait`].
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.waker.signal()
    }

    /// Removes `fd` (before it is closed, so no stale event can name its key).
    pub(crate) fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.reactor.delete(fd)
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds; `None` = forever) and hands
    /// every source event to its `IoState`. Returns the number of events (wake-ups included).
    pub(crate) fn wait(
        &self,
        events: &mut [EpollEvent],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let n = self.reactor.wait(events, timeout)?;
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
        if let Err(e) = worker.poller.reactor.add(fd, key as u64) {
            s.free.push(key);
            return Err(e);
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
