//! An fd-owning socket plus its reactor state ([`Source`]): the "try the syscall, park on
//! would-block" loop with timeouts, and the `poll(2)` loop of plain threads.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{CLOSED, Dir, IoState, register, stopped_error, wake_all};
use crate::context;
use crate::sys;
use crate::task::{self, OnUnwind, Waker};

/// How often a plain thread waiting in `poll(2)` re-checks for [`Source::stop`].
const STOP_CHECK: Duration = Duration::from_millis(50);

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
    /// coroutines parked in one. A plain thread blocked in `poll(2)` notices within
    /// [`STOP_CHECK`].
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
            register(&self.io, self.sock.as_fd())?;
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
            let w = waker.get_or_insert_with(sys::current_waker);
            io.waiters(dir).lock().add(w.clone());
            // Re-check both wake conditions now that a waker would find us: a readiness or a
            // stop() that landed between the checks above and the add would otherwise be missed.
            if io.ready.load(Ordering::Acquire) & dir.bit() != 0
                || io.stopped.load(Ordering::Acquire)
            {
                continue;
            }
            // A park that unwinds (scheduler shutdown) leaves no finished task in the list.
            let unwind = OnUnwind::new(|| io.waiters(dir).lock().remove(w));
            let parked = sys::park(deadline);
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
            if context::on_worker_thread() {
                return Err(task::shutdown_error());
            }
            // stop() cannot wake a thread in poll(2): poll in slices and re-check `stopped`.
            let left = match deadline {
                None => STOP_CHECK,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "operation timed out",
                        ));
                    }
                    left.min(STOP_CHECK)
                }
            };
            // Round up so we never spin on a sub-millisecond remainder.
            let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
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
