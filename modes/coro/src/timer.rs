//! Per-worker timers: an ordered map of deadlines with O(log n) insert, cancel and expiry.
//!
//! A `BTreeMap` keyed by `(deadline, sequence)` rather than a `BinaryHeap`, because I/O
//! timeouts are cancelled far more often than they fire (every read that completes cancels its
//! timer) and a heap would accumulate cancelled entries.

use std::collections::BTreeMap;
use std::time::Instant;

/// Identifies one armed timer, for cancellation.
pub(crate) type TimerKey = (Instant, u64);

/// Armed timers, each carrying a value (the slot of the coroutine to wake).
#[derive(Debug)]
pub(crate) struct Timers<T> {
    map: BTreeMap<TimerKey, T>,
    seq: u64,
}

impl<T> Timers<T> {
    /// No timers.
    pub(crate) fn new() -> Timers<T> {
        Timers {
            map: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Arms a timer for `deadline`.
    pub(crate) fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        self.seq += 1;
        let key = (deadline, self.seq);
        self.map.insert(key, value);
        key
    }

    /// Cancels a timer; returns its value if it was still armed.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<T> {
        self.map.remove(&key)
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|(k, _)| k.0)
    }

    /// Whether no timer is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        match self.map.first_entry() {
            Some(e) if e.key().0 <= now => Some(e.remove()),
            _ => None,
        }
    }

    /// Number of armed timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expire_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.insert(t0 + Duration::from_millis(30), "c");
        t.insert(t0 + Duration::from_millis(10), "a");
        t.insert(t0 + Duration::from_millis(20), "b");
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_expired(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(t.pop_expired(now), Some("a"));
        assert_eq!(t.pop_expired(now), Some("b"));
        assert_eq!(t.pop_expired(now), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cancel_removes_and_same_deadline_is_distinct() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let k1 = t.insert(t0, 1);
        let k2 = t.insert(t0, 2);
        assert_ne!(k1, k2);
        assert_eq!(t.remove(k1), Some(1));
        assert_eq!(t.remove(k1), None);
        assert_eq!(t.pop_expired(t0), Some(2));
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }
}
