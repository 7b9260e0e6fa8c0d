//! The reactor of coroutine I/O (layer 4, on the stack switcher): per-fd readiness tracked
//! from edge-triggered events, waiter lists, and each worker's table of registered sources.
//!
//! Readiness is one `AtomicU64`: bit 0 readable, bit 1 writable, bit 2 closed (the peer shut
//! its side or the connection failed: `EPOLLRDHUP`/`HUP`/`ERR` seen, sticky), the rest an event
//! counter. An operation that sees would-block (or a short read/write, which means the kernel
//! buffer is drained/full) clears its bit only if no event arrived since it sampled the word, so
//! an edge that lands between the syscall and the clear is never lost. A short read or write
//! after "closed" was seen clears nothing: no further edge would come, and the next syscall
//! reports the EOF or error at once. A new source starts as ready in both directions: the first
//! operation always tries the syscall.
//!
//! Sources: an event carries a key into the worker's thread-local table of `IoState`s. A
//! coroutine registers its socket on the worker it runs on ([`register`]), on its first
//! operation there; the socket's owner deletes it from the epoll before closing it and sends
//! the key back to the worker (`WorkerShared::dereg`), which then forgets it ([`forget`]).
//! The socket wrapper with the "try, park on would-block" loop is [`source::Source`].

pub(crate) mod source;

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use parking_lot::Mutex;
use zmaster_pool::reactor::{HUP_FLAGS, READ_FLAGS, WAKER_KEY, WRITE_FLAGS};

use super::context::{self, WorkerShared};
use super::task::Waker;

/// Events fetched per `epoll_wait`.
pub(crate) const EVENTS: usize = 256;

const READABLE: u64 = 1;
const WRITABLE: u64 = 2;
const CLOSED: u64 = 4;
const FLAGS: u64 = 7;
const TICK: u64 = 8;

/// Direction of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

impl Dir {
    fn bit(self) -> u64 {
        match self {
            Dir::Read => READABLE,
            Dir::Write => WRITABLE,
        }
    }
}

/// Coroutines (or threads) waiting for one direction; the first needs no allocation.
#[derive(Default)]
struct Waiters {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Waiters {
    fn add(&mut self, w: Waker) {
        match &self.first {
            None => self.first = Some(w),
            Some(f) if f.same(&w) => {}
            Some(_) => {
                if !self.rest.iter().any(|r| r.same(&w)) {
                    self.rest.push(w);
                }
            }
        }
    }

    fn remove(&mut self, w: &Waker) {
        if self.first.as_ref().is_some_and(|f| f.same(w)) {
            self.first = self.rest.pop();
        } else {
            self.rest.retain(|r| !r.same(w));
        }
    }

    fn take(&mut self) -> (Option<Waker>, Vec<Waker>) {
        (self.first.take(), std::mem::take(&mut self.rest))
    }
}

/// Readiness and waiters of one fd.
pub(crate) struct IoState {
    ready: AtomicU64,
    readers: Mutex<Waiters>,
    writers: Mutex<Waiters>,
    reg: OnceLock<(Arc<WorkerShared>, usize)>,
    /// Timeouts in nanoseconds, 0 = none.
    read_timeout: AtomicU64,
    /// Set by `Source::stop`: every operation fails from then on.
    stopped: AtomicBool,
    write_timeout: AtomicU64,
}

impl IoState {
    fn new() -> IoState {
        IoState {
            ready: AtomicU64::new(READABLE | WRITABLE),
            readers: Mutex::new(Waiters::default()),
            writers: Mutex::new(Waiters::default()),
            reg: OnceLock::new(),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Records the worker poller this source was added to; false if it already was.
    pub(crate) fn set_registration(&self, worker: Arc<WorkerShared>, key: usize) -> bool {
        self.reg.set((worker, key)).is_ok()
    }

    /// An event from the poller: record readiness, wake waiters.
    fn on_event(&self, flags: EpollFlags) {
        let readable = flags.intersects(READ_FLAGS);
        let writable = flags.intersects(WRITE_FLAGS);
        let closed = flags.intersects(HUP_FLAGS);
        let bits = ((readable as u64) * READABLE)
            | ((writable as u64) * WRITABLE)
            | ((closed as u64) * CLOSED);
        if bits == 0 {
            return;
        }
        let _ = self
            .ready
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some((s & !FLAGS).wrapping_add(TICK) | (s & FLAGS) | bits)
            });
        if readable {
            wake_all(&self.readers);
        }
        if writable {
            wake_all(&self.writers);
        }
    }

    /// Clears `dir`'s readiness if nothing happened since `seen` was sampled.
    fn clear(&self, dir: Dir, seen: u64) {
        let _ = self.ready.compare_exchange(
            seen,
            seen & !dir.bit(),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    fn waiters(&self, dir: Dir) -> &Mutex<Waiters> {
        match dir {
            Dir::Read => &self.readers,
            Dir::Write => &self.writers,
        }
    }

    fn timeout_cell(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Read => &self.read_timeout,
            Dir::Write => &self.write_timeout,
        }
    }
}

/// The error of operations on a stopped source.
pub(crate) fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "listener stopped")
}

fn wake_all(w: &Mutex<Waiters>) {
    let (first, rest) = w.lock().take();
    if let Some(f) = first {
        f.wake();
    }
    for r in rest {
        r.wake();
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
pub(crate) fn register(src: &Arc<IoState>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let Some(worker) = context::current_worker() else {
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
        if let Err(e) = worker.poller.add(fd, key as u64) {
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

/// Hands every source event among `events` to its `IoState` (the worker calls this after each
/// `Poller::wait`, on the thread whose table the keys index).
pub(crate) fn dispatch(events: &[EpollEvent]) {
    SOURCES.with_borrow(|s| {
        for ev in events {
            let key = ev.data();
            if key == WAKER_KEY {
                continue;
            }
            if let Some(Some(io)) = s.slots.get(key as usize) {
                io.on_event(ev.events());
            }
        }
    });
}
