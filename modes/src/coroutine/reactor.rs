//! The reactor side of coroutine I/O: per-fd readiness tracked from edge-triggered events,
//! waiter lists, and the "try the syscall, park on would-block" loop with timeouts.
//!
//! Readiness is one `AtomicU64`: bit 0 readable, bit 1 writable, bit 2 closed (the peer shut
//! its side or the connection failed: `EPOLLRDHUP`/`HUP`/`ERR` seen, sticky), the rest an event
//! counter. An operation that sees would-block (or a short read/write, which means the kernel
//! buffer is drained/full) clears its bit only if no event arrived since it sampled the word, so
//! an edge that lands between the syscall and the clear is never lost. A short read or write
//! after "closed" was seen clears nothing: no further edge would come, and the next syscall
//! reports the EOF or error at once. A new source starts as ready in both directions: the first
//! operation always tries the syscall.

mod epoll;

pub(crate) use epoll::{EVENTS, Poller, forget, forget_all};

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::EpollFlags;
use parking_lot::Mutex;

use super::sched::{self, WorkerShared};
use super::sync::OnUnwind;
use super::sys;
use super::task::{self, Waker};

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
        let readable = flags.intersects(epoll::READ_FLAGS);
        let writable = flags.intersects(epoll::WRITE_FLAGS);
        let closed = flags.intersects(epoll::HUP_FLAGS);
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

/// An fd-owning socket plus its reactor state. Deletes the fd from the poller before the
/// socket closes.
pub(crate) struct Source<S: AsFd> {
    sock: S,
    io: Arc<IoState>,
}

impl<S: AsFd> Source<S> {
    /// Wraps a socket that is already in non-blocking mode.
    pub(crate) fn new(sock: S) -> Source<S> {
        Source {
            sock,
            io: Arc::new(IoState::new()),
        }
    }

    pub(crate) fn get(&self) -> &S {
        &self.sock
    }

    pub(crate) fn set_timeout(&self, dir: Dir, t: Option<Duration>) -> io::Result<()> {
        let nanos = match t {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a zero duration timeout",
                ));
            }
            Some(d) => d.as_nanos().min(u64::MAX as u128) as u64,
        };
        self.io.timeout_cell(dir).store(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// Makes every pending and later operation fail with [`stopped_error`], waking the
    /// coroutines parked in one. A plain thread blocked in `poll(2)` notices at its next
    /// wake-up (use a timeout there).
    pub(crate) fn stop(&self) {
        self.io.stopped.store(true, Ordering::Release);
        wake_all(&self.io.readers);
        wake_all(&self.io.writers);
    }

    /// Whether [`Source::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.io.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn timeout(&self, dir: Dir) -> Option<Duration> {
        match self.io.timeout_cell(dir).load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Runs `op` until it does not would-block, parking the coroutine (or polling the thread)
    /// in between; `short` tells whether a result proves the buffer drained (or full), which
    /// clears the direction's readiness unless the source was seen closed.
    pub(crate) fn io<R>(
        &self,
        dir: Dir,
        mut op: impl FnMut(&S) -> io::Result<R>,
        short: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let deadline = self
            .timeout(dir)
            .and_then(|t| Instant::now().checked_add(t));
        if !sys::in_coroutine() {
            return self.io_blocking(dir, deadline, op);
        }
        if self.io.reg.get().is_none() {
            epoll::register(&self.io, self.sock.as_fd())?;
        }
        let io = &*self.io;
        let mut waker: Option<Waker> = None;
        let result = loop {
            if io.stopped.load(Ordering::Acquire) {
                break Err(stopped_error());
            }
            let seen = io.ready.load(Ordering::Acquire);
            if seen & dir.bit() != 0 {
                match op(&self.sock) {
                    Ok(r) => {
                        if seen & CLOSED == 0 && short(&r) {
                            io.clear(dir, seen);
                        }
                        break Ok(r);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        io.clear(dir, seen);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "operation timed out",
                ));
            }
            let w = waker.get_or_insert_with(task::current_waker);
            io.waiters(dir).lock().add(w.clone());
            if io.ready.load(Ordering::Acquire) & dir.bit() != 0 {
                continue;
            }
            // A park that unwinds (scheduler shutdown) leaves no finished task in the list.
            let unwind = OnUnwind::new(|| io.waiters(dir).lock().remove(w));
            let parked = task::park(deadline);
            unwind.disarm();
            if !parked {
                break Err(task::shutdown_error());
            }
        };
        if let Some(w) = waker {
            io.waiters(dir).lock().remove(&w);
        }
        result
    }

    /// The plain-thread path: `poll(2)` on the fd between attempts.
    fn io_blocking<R>(
        &self,
        dir: Dir,
        deadline: Option<Instant>,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            if self.io.stopped.load(Ordering::Acquire) {
                return Err(stopped_error());
            }
            match op(&self.sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
            if sched::on_worker_thread() {
                return Err(task::shutdown_error());
            }
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "operation timed out",
                        ));
                    }
                    // Round up so we never spin on a sub-millisecond remainder.
                    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let flags = match dir {
                Dir::Read => PollFlags::POLLIN,
                Dir::Write => PollFlags::POLLOUT,
            };
            let mut fds = [PollFd::new(self.sock.as_fd(), flags)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<S: AsFd> Drop for Source<S> {
    fn drop(&mut self) {
        if let Some((worker, key)) = self.io.reg.get() {
            if let Err(e) = worker.poller.delete(self.sock.as_fd()) {
                log::debug!("coroutine epoll delete failed: {e}");
            }
            worker.dereg.push(*key);
        }
    }
}
