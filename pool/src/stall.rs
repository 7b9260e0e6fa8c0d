//! Hang detection (`server-hang-timeout`): each event-loop thread keeps a [`LoopTick`], the
//! time its current loop turn started (or "idle" while it blocks in `epoll_wait`), so a
//! watchdog can name a thread stuck in a callback or coroutine ([`stalled`]).
//!
//! Design notes:
//! - The tick is per worker thread and written by that thread's loop (once per turn, from
//!   the clock read the loop makes anyway), never from a shared event loop: a stuck handler
//!   stops exactly its own thread's tick (gunicorn's threaded workers heartbeat from their
//!   main loop, so a stuck request is never caught: its issue #2086).
//! - A thread about to block in its poller marks itself idle first: an idle server is never
//!   reported, however long it waits.
//! - The coroutine scheduler also records the id of the coroutine it resumes (one relaxed
//!   store per switch), so the report names the coroutine that does not yield.
//! - Times are milliseconds on a process-wide monotonic clock ([`to_ms`]), stored in
//!   `AtomicU64`s; 0 means "idle" / "none".

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The clock's origin: set on first use; every stored time is after it.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// `t` as milliseconds since the process-wide epoch, plus one (so 0 is never a time).
pub(crate) fn to_ms(t: Instant) -> u64 {
    let ms = t.saturating_duration_since(epoch()).as_millis();
    // Past u64 milliseconds (half a billion years) saturates.
    u64::try_from(ms).map_or(u64::MAX, |ms| ms.saturating_add(1))
}

/// The instant of a non-zero value of [`to_ms`].
pub(crate) fn from_ms(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms.saturating_sub(1))
}

/// A thread that has not come back to its event loop for longer than the timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The thread's name (`zm-worker-N`, `zm-coro-N`).
    pub thread_name: String,
    /// How long it has been busy in its current loop turn.
    pub busy_for: Duration,
    /// The coroutine it was running (coroutine mode; `None` in aio mode or when it is stuck
    /// outside any coroutine).
    pub coroutine: Option<u64>,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "thread={} busy_for={}ms",
            self.thread_name,
            self.busy_for.as_millis()
        )?;
        if let Some(id) = self.coroutine {
            write!(f, " coroutine={id}")?;
        }
        Ok(())
    }
}

/// One event-loop thread's tick. Written by that thread only, read by a watchdog.
#[derive(Debug)]
pub struct LoopTick {
    name: String,
    /// `to_ms` of the start of the current loop turn; 0 while idle in the poller.
    busy_since: AtomicU64,
    /// The coroutine being resumed; 0 when none.
    coroutine: AtomicU64,
}

impl LoopTick {
    /// The tick of the thread `name`, idle.
    pub fn new(name: impl Into<String>) -> LoopTick {
        epoch();
        LoopTick {
            name: name.into(),
            busy_since: AtomicU64::new(0),
            coroutine: AtomicU64::new(0),
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A loop turn starts at `now` (the thread is back from its poller, or did not block).
    #[inline]
    pub fn busy(&self, now: Instant) {
        self.busy_since.store(to_ms(now), Ordering::Relaxed);
    }

    /// The thread is about to block in its poller: not stalled, however long it sleeps.
    #[inline]
    pub fn idle(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
    }

    /// The thread resumes coroutine `id` (`None`: back in the scheduler's own code).
    #[inline]
    pub fn running(&self, id: Option<u64>) {
        self.coroutine.store(id.unwrap_or(0), Ordering::Relaxed);
    }

    /// How long the current loop turn has lasted at `now` (to the millisecond); `None` while
    /// the thread is idle in its poller.
    pub fn busy_for(&self, now: Instant) -> Option<Duration> {
        match self.busy_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(now.saturating_duration_since(from_ms(since))),
        }
    }

    /// The stall of this thread at `now`, if its loop turn has lasted longer than `timeout`.
    pub fn stall(&self, timeout: Duration, now: Instant) -> Option<Stall> {
        let busy_for = self.busy_for(now)?;
        if busy_for <= timeout {
            return None;
        }
        Some(Stall {
            thread_name: self.name.clone(),
            busy_for,
            coroutine: match self.coroutine.load(Ordering::Relaxed) {
                0 => None,
                id => Some(id),
            },
        })
    }
}

/// The threads among `ticks` busy in one loop turn for longer than `timeout`.
pub fn stalled<'a>(ticks: impl IntoIterator<Item = &'a LoopTick>, timeout: Duration) -> Vec<Stall> {
    let now = Instant::now();
    ticks
        .into_iter()
        .filter_map(|t| t.stall(timeout, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips_to_the_millisecond() {
        let t = Instant::now() + Duration::from_millis(1500);
        let back = from_ms(to_ms(t));
        assert!(
            back <= t && t - back < Duration::from_millis(1),
            "{t:?} {back:?}"
        );
        assert!(to_ms(epoch()) == 1, "zero is kept for 'none'");
        // Before the epoch saturates to the epoch, never to 0.
        if let Some(before) = epoch().checked_sub(Duration::from_millis(5)) {
            assert_eq!(to_ms(before), 1);
        }
    }

    #[test]
    fn idle_tick_is_never_stalled_busy_one_is_after_the_timeout() {
        let tick = LoopTick::new("zm-worker-7");
        assert_eq!(tick.name(), "zm-worker-7");
        // A whole millisecond of the tick clock, so the comparisons below are exact.
        let t0 = from_ms(to_ms(Instant::now()));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(tick.stall(Duration::ZERO, later), None, "never ran: idle");

        tick.busy(t0);
        let timeout = Duration::from_secs(2);
        assert_eq!(tick.stall(timeout, t0 + Duration::from_secs(1)), None);
        assert_eq!(
            tick.stall(timeout, t0 + timeout),
            None,
            "exactly the timeout: not yet"
        );
        let s = tick
            .stall(timeout, t0 + Duration::from_secs(3))
            .expect("stalled");
        assert_eq!(s.thread_name, "zm-worker-7");
        assert_eq!(s.coroutine, None);
        assert!(
            s.busy_for > timeout && s.busy_for <= Duration::from_secs(3),
            "{s:?}"
        );
        assert_eq!(
            s.to_string(),
            format!("thread=zm-worker-7 busy_for={}ms", s.busy_for.as_millis())
        );

        tick.running(Some(42));
        let s = tick.stall(timeout, later).expect("stalled");
        assert_eq!(s.coroutine, Some(42));
        assert!(s.to_string().ends_with(" coroutine=42"), "{s}");
        tick.running(None);
        assert_eq!(tick.stall(timeout, later).expect("stalled").coroutine, None);

        tick.idle();
        assert_eq!(tick.stall(Duration::ZERO, later), None, "idle again");
        tick.busy(later);
        assert_eq!(
            tick.stall(timeout, later + timeout),
            None,
            "a new turn restarts the count"
        );
    }

    #[test]
    fn stalled_lists_only_the_threads_past_the_timeout() {
        let ticks = [LoopTick::new("a"), LoopTick::new("b"), LoopTick::new("c")];
        let old = Instant::now();
        ticks[0].busy(old);
        // Let more than the timeout pass on the clock (polled, not assumed).
        while Instant::now() < old + Duration::from_millis(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        ticks[1].busy(Instant::now() + Duration::from_secs(60));
        let found = stalled(&ticks, Duration::from_millis(3));
        let names: Vec<&str> = found.iter().map(|s| s.thread_name.as_str()).collect();
        assert_eq!(names, ["a"], "b started its turn later, c is idle");
        assert!(stalled(&ticks, Duration::from_secs(3600)).is_empty());
    }
}
