//! Crash-loop protection: the delay before a service's next start after a child died young.

use std::time::Duration;

/// The first delay after a young death.
pub(crate) const START: Duration = Duration::from_millis(100);
/// The longest delay.
pub(crate) const CAP: Duration = Duration::from_secs(30);
/// A child that lived this long was healthy: the delay resets.
pub(crate) const HEALTHY: Duration = Duration::from_secs(1);

/// Exponential backoff per service: 100 ms doubling to 30 s, reset by a child that lived 1 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    /// Records a child's death after it lived `lived`; returns the delay before the next start.
    pub fn on_exit(&mut self, lived: Duration) -> Duration {
        self.delay = if lived >= HEALTHY {
            Duration::ZERO
        } else if self.delay.is_zero() {
            START
        } else {
            (self.delay * 2).min(CAP)
        };
        self.delay
    }

    /// The current delay (zero when healthy).
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let young = Duration::from_millis(10);
        assert_eq!(b.delay(), Duration::ZERO);
        let delays: Vec<u128> = (0..12)
            .map(|_| {
                let d = b.on_exit(young);
                assert_eq!(b.delay(), d, "delay() is what on_exit returned");
                d.as_millis()
            })
            .collect();
        assert_eq!(
            delays,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(b.on_exit(HEALTHY), Duration::ZERO);
        assert_eq!(b.on_exit(young), START);
    }

    #[test]
    fn starts_in_ten_seconds_of_a_crash_loop_are_few() {
        // A service that dies at once starts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s: exactly 7
        // in 10 s. Fewer means it stopped restarting; more means the backoff is too weak.
        let mut b = Backoff::default();
        let (mut t, mut starts) = (Duration::ZERO, 0);
        // Bounded: a backoff stuck at zero must fail here, not spin.
        while t < Duration::from_secs(10) && starts < 100 {
            starts += 1;
            t += b.on_exit(Duration::ZERO);
        }
        assert_eq!(starts, 7);
        assert_eq!(b.delay(), Duration::from_millis(6400));
    }
}
