//! Giving the memory of closed connections back to the OS after a burst (`malloc_trim`).
//!
//! glibc keeps freed heap memory in its arenas: after 10,000 idle connections close, the
//! worker threads' arenas stayed ~44 MB resident although every buffer was freed (measured
//! with `examples/tests/echo_hostile.rs`). So each worker counts the connections it closes;
//! once at least [`BURST`] have closed since the last trim and at most a quarter of the
//! most it had open since then are still open, it calls `malloc_trim(0)` (a few
//! milliseconds once per burst, never per connection).

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::Conn;

/// Closed connections that make a burst worth trimming after.
pub(crate) const BURST: usize = 1024;

/// One worker's count of connections since its last trim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AfterBurst {
    /// The most connections open at once since the last trim.
    peak: usize,
    /// Connections closed since the last trim.
    closed: usize,
}

impl AfterBurst {
    /// A connection opened; `live` are open now (counting it).
    pub(crate) fn opened(&mut self, live: usize) {
        self.peak = self.peak.max(live);
    }

    /// A connection closed; `live` are still open. Returns whether to trim now.
    pub(crate) fn closed(&mut self, live: usize) -> bool {
        self.closed += 1;
        if self.closed >= BURST && live <= self.peak / 4 {
            *self = AfterBurst {
                peak: live,
                closed: 0,
            };
            return true;
        }
        false
    }
}

thread_local! {
    /// The count of the worker running on this thread (a `Conn` never leaves its worker).
    static WORKER: Cell<AfterBurst> = const { Cell::new(AfterBurst { peak: 0, closed: 0 }) };
}

/// Counts a connection opened on this thread's worker (`live` open now, with it).
pub(crate) fn opened(live: usize) {
    WORKER.with(|w| {
        let mut a = w.get();
        a.opened(live);
        w.set(a);
    });
}

/// Counts a connection closed on this thread's worker (`live` still open), trimming the
/// heap at the end of a burst.
pub(crate) fn closed(live: usize) {
    let trim = WORKER.with(|w| {
        let mut a = w.get();
        let trim = a.closed(live);
        w.set(a);
        trim
    });
    if trim {
        give_back();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The worker's load still counts this connection until it is dropped.
        closed(self.worker.load.load(Ordering::Relaxed).saturating_sub(1));
    }
}

/// Returns the free pages of every malloc arena to the OS.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn give_back() {
    // SAFETY: malloc_trim takes no pointers; it only releases memory malloc holds free, under
    // malloc's own locks, so it is sound from any thread at any time. It returns normally.
    let _ = unsafe { libc::malloc_trim(0) };
}

/// Other allocators return memory on their own (or offer no such call).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `n` connections then closes them all; returns after how many closes it trimmed.
    fn burst(a: &mut AfterBurst, start: usize, n: usize) -> Vec<usize> {
        for i in 1..=n {
            a.opened(start + i);
        }
        (1..=n).filter(|i| a.closed(start + n - i)).collect()
    }

    #[test]
    fn a_big_burst_trims_at_a_quarter_and_again_after_burst_more() {
        let mut a = AfterBurst::default();
        // 5,000 open: the first trim when 1,250 are left (3,750 closed); the next once
        // BURST more closed with at most a quarter of 1,250 left (226 left); the last 226
        // closes are too few to trim for.
        assert_eq!(burst(&mut a, 0, 5000), vec![3750, 3750 + BURST]);
        assert_eq!(
            a,
            AfterBurst {
                peak: 226,
                closed: 226
            }
        );
    }

    #[test]
    fn small_bursts_never_trim_until_enough_closed() {
        let mut a = AfterBurst::default();
        assert_eq!(burst(&mut a, 0, BURST - 1), Vec::<usize>::new());
        // The closes add up across bursts: the next one crosses BURST at its first close
        // (everything closed, 0 <= peak / 4).
        assert_eq!(burst(&mut a, 0, 10), vec![1]);
    }

    #[test]
    fn no_trim_while_most_connections_stay_open() {
        let mut a = AfterBurst::default();
        a.opened(4000);
        // 2,000 churn in and out while 4,000 stay open: more than a quarter is open.
        assert_eq!(burst(&mut a, 4000, 2000), Vec::<usize>::new());
        // Exactly a quarter left is low enough.
        let mut b = AfterBurst::default();
        b.opened(4 * BURST);
        let trims: Vec<usize> = (1..=3 * BURST)
            .filter(|i| b.closed(4 * BURST - i))
            .collect();
        assert_eq!(trims, vec![3 * BURST]);
    }

    #[test]
    fn the_thread_count_sees_opens_and_closes() {
        for live in 1..=2 * BURST {
            opened(live);
        }
        // Half closed: BURST closes, but more than a quarter of the peak still open.
        for live in (BURST..2 * BURST).rev() {
            closed(live);
        }
        assert_eq!(
            WORKER.with(Cell::get),
            AfterBurst {
                peak: 2 * BURST,
                closed: BURST
            }
        );
    }

    #[test]
    fn the_thread_count_trims_and_restarts() {
        for live in 1..=BURST {
            opened(live);
        }
        for live in (0..BURST).rev() {
            closed(live);
        }
        assert_eq!(WORKER.with(Cell::get), AfterBurst::default());
    }
}
