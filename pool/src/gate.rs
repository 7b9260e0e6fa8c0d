//! [`ConnGate`]: the open-connection count of a process, its optional limit
//! (`server-max-connections`) and the counters the runtime's lifecycle rules read
//! (`accepted_total` for `server-max-use`, `idle_since` for `server-max-idle`).
//!
//! Design notes:
//! - Whoever accepts counts the connection ([`ConnGate::enter`] / [`ConnGate::guard`]) before
//!   handing it on, on the accepting thread, so the acceptor that checks [`ConnGate::at_limit`]
//!   right after delivering a connection sees it. Whoever closes it releases it.
//! - An acceptor at the limit stops polling its listeners and waits; it announces that with
//!   a [`LimitWaiter`] (registered wake-up) and then re-checks the count. A release first
//!   decrements, then looks for waiters (both `SeqCst`), so a release racing with the pause
//!   is seen by one side or the other: no lost wake-up, no polling.
//! - The hot path (one connection opened or closed) is atomics only; the lock is taken when
//!   the count drops to zero (for [`ConnGate::wait_idle`]) or when someone waits at the limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::board::Board;
use crate::stall::{from_ms, to_ms};

type Wake = Box<dyn Fn() + Send + Sync>;

/// Open connections of one process, with an optional limit. See the module notes.
pub struct ConnGate {
    active: AtomicUsize,
    /// The limit; `usize::MAX` when there is none.
    limit: usize,
    /// `server-max-use`: no more accepts once `accepted` reaches it; `u64::MAX` for none.
    max_accepts: u64,
    accepted: AtomicU64,
    /// `to_ms` of the last `enter` (0: none yet).
    last_accept: AtomicU64,
    /// `to_ms` of the last release (0: none yet).
    last_close: AtomicU64,
    /// `to_ms` of the gate's creation.
    created: u64,
    /// Runs when `accepted` reaches `max_accepts` ([`ConnGate::on_budget_spent`]).
    spent: OnceLock<Wake>,
    /// The service's board, when the master gave one: every count and release is mirrored
    /// into this process's slot ([`ConnGate::set_board`]).
    board: OnceLock<Arc<Board>>,
    /// How many [`LimitWaiter`]s exist (read on every release).
    waiting: AtomicUsize,
    waiters: Mutex<Waiters>,
    lock: Mutex<()>,
    idle: Condvar,
}

#[derive(Default)]
struct Waiters {
    next: u64,
    list: Vec<(u64, Wake)>,
}

/// A counted connection: released when dropped (see [`ConnGate::guard`]).
#[must_use = "the connection is released when the guard is dropped"]
pub struct ConnGuard {
    gate: Arc<ConnGate>,
}

/// Someone waiting for the count to drop below the limit; its wake-up runs on every release
/// below the limit while it exists (see [`ConnGate::waiter`]).
#[must_use = "the wake-up is unregistered when the waiter is dropped"]
pub struct LimitWaiter<'a> {
    gate: &'a ConnGate,
    id: u64,
}

impl ConnGate {
    /// A gate with no connection; `max_connections` `None` or `Some(0)` means no limit
    /// (`server-max-connections = 0` is "off").
    pub fn new(max_connections: Option<usize>) -> Arc<ConnGate> {
        ConnGate::with_limits(max_connections, None)
    }

    /// A gate with both limits: `max_connections` open at once (as [`new`](ConnGate::new)) and
    /// `max_accepts` in all (`server-max-use`: once that many were counted the gate stays at
    /// its limit for good, so acceptors stop exactly there; `None` or `Some(0)`: no limit).
    pub fn with_limits(max_connections: Option<usize>, max_accepts: Option<u64>) -> Arc<ConnGate> {
        Arc::new(ConnGate {
            active: AtomicUsize::new(0),
            limit: match max_connections {
                None | Some(0) => usize::MAX,
                Some(n) => n,
            },
            max_accepts: match max_accepts {
                None | Some(0) => u64::MAX,
                Some(n) => n,
            },
            accepted: AtomicU64::new(0),
            last_accept: AtomicU64::new(0),
            last_close: AtomicU64::new(0),
            created: to_ms(Instant::now()),
            spent: OnceLock::new(),
            board: OnceLock::new(),
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
            lock: Mutex::new(()),
            idle: Condvar::new(),
        })
    }

    /// The limit, if any.
    pub fn max_connections(&self) -> Option<usize> {
        (self.limit != usize::MAX).then_some(self.limit)
    }

    /// Counts a new connection (call [`release`](ConnGate::release) once when it closes).
    pub fn enter(&self) {
        self.last_accept
            .store(to_ms(Instant::now()), Ordering::Relaxed);
        let before = self.accepted.fetch_add(1, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        if let Some(board) = self.board.get() {
            board.enter();
        }
        if before.wrapping_add(1) == self.max_accepts
            && let Some(wake) = self.spent.get()
        {
            wake();
        }
    }

    /// Runs `wake` when the accept budget is spent: on the thread whose
    /// [`enter`](ConnGate::enter) spends it, or here at once if it already is. The first
    /// call's `wake` is kept (later ones are run at most at once). A race between the two
    /// can run it twice, and a missed one leaves the caller to its own polling: `wake` must
    /// be cheap and idempotent (a nudge).
    pub fn on_budget_spent(&self, wake: impl Fn() + Send + Sync + 'static) {
        let wake: Wake = Box::new(wake);
        let kept = match self.spent.set(wake) {
            Ok(()) => self.spent.get(),
            Err(_) => None,
        };
        if self.budget_spent()
            && let Some(wake) = kept
        {
            wake();
        }
    }

    /// Counts a new connection and returns the guard that releases it when dropped.
    pub fn guard(self: &Arc<Self>) -> ConnGuard {
        self.enter();
        ConnGuard {
            gate: Arc::clone(self),
        }
    }

    /// A connection counted by [`enter`](ConnGate::enter) closed.
    pub fn release(&self) {
        self.release_at(Instant::now());
    }

    /// As [`release`](ConnGate::release), with the caller's notion of now (a worker passes
    /// the time its loop turn started: no clock read per close).
    pub(crate) fn release_at(&self, now: Instant) {
        // Before the decrement: whoever sees the count at zero also sees this time.
        self.last_close.store(to_ms(now), Ordering::Release);
        let before = self.active.fetch_sub(1, Ordering::SeqCst);
        if let Some(board) = self.board.get() {
            board.leave();
        }
        if before == 1 {
            let _guard = self.lock.lock();
            self.idle.notify_all();
        }
        if before <= self.limit && self.waiting.load(Ordering::SeqCst) > 0 {
            for (_, wake) in &self.waiters.lock().list {
                wake();
            }
        }
    }

    /// Publishes this process's count on the service's `board` from now on (the acceptor
    /// balances against the siblings: [`crate::board`]). Only the first call counts; call it
    /// before the first connection (a count taken before would stay off the board).
    pub fn set_board(&self, board: Arc<Board>) {
        if self.board.set(board).is_err() {
            log::debug!("gate: a board was set already");
        }
    }

    /// The board this gate publishes on, if any.
    pub fn board(&self) -> Option<&Arc<Board>> {
        self.board.get()
    }

    /// Connections counted and not yet released.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether the count is at (or above) the limit, or the accept budget is spent: accepting
    /// must pause.
    pub fn at_limit(&self) -> bool {
        self.active() >= self.limit || self.budget_spent()
    }

    /// Whether `max_accepts` connections were counted: no release brings the gate back below
    /// its limit then (the process retires, SPEC §13 `server-max-use`).
    pub fn budget_spent(&self) -> bool {
        self.accepted_total() >= self.max_accepts
    }

    /// Connections counted since the gate was created (`server-max-use`).
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// When the last connection was counted (millisecond precision), if any was.
    pub fn last_accept(&self) -> Option<Instant> {
        match self.last_accept.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(from_ms(ms)),
        }
    }

    /// Since when no connection has been open (`server-max-idle`): the latest of the
    /// gate's creation, the last accept and the last close (millisecond precision); `None`
    /// while a connection is open.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.active() > 0 {
            return None;
        }
        let close = self.last_close.load(Ordering::Acquire);
        let accept = self.last_accept.load(Ordering::Relaxed);
        Some(from_ms(self.created.max(close).max(accept)))
    }

    /// Blocks until no connection is open or `deadline` passes; `true` if idle.
    pub fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let mut guard = self.lock.lock();
        while self.active() > 0 {
            match deadline {
                None => self.idle.wait(&mut guard),
                Some(d) => {
                    if self.idle.wait_until(&mut guard, d).timed_out() {
                        return self.active() == 0;
                    }
                }
            }
        }
        true
    }

    /// Registers `wake`, run (on the releasing thread, under a lock: it must only signal)
    /// by every release that leaves the count below the limit, until the returned waiter is
    /// dropped. Create the waiter, then re-check [`at_limit`](ConnGate::at_limit) before
    /// blocking: a release between the two is then seen by that check.
    pub fn waiter(&self, wake: impl Fn() + Send + Sync + 'static) -> LimitWaiter<'_> {
        let mut waiters = self.waiters.lock();
        let id = waiters.next;
        waiters.next += 1;
        waiters.list.push((id, Box::new(wake)));
        self.waiting.fetch_add(1, Ordering::SeqCst);
        LimitWaiter { gate: self, id }
    }
}

impl Drop for LimitWaiter<'_> {
    fn drop(&mut self) {
        let mut waiters = self.gate.waiters.lock();
        waiters.list.retain(|(id, _)| *id != self.id);
        self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.gate.release();
    }
}

impl std::fmt::Debug for ConnGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnGate")
            .field("active", &self.active())
            .field("max_connections", &self.max_connections())
            .field("accepted_total", &self.accepted_total())
            .finish()
    }
}

impl std::fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnGuard").finish()
    }
}

impl std::fmt::Debug for LimitWaiter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitWaiter").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests;
